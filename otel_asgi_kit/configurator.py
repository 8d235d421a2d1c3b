"""The ``opentelemetry_configurator`` entry point, run by ``opentelemetry-instrument``."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk._configuration import _BaseConfigurator

from otel_asgi_kit.bootstrap import configure
from otel_asgi_kit.failsafe import report_once


class KitConfigurator(_BaseConfigurator):
    def _configure(self, **kwargs: Any) -> None:
        try:
            configure()
        except Exception as exc:  # the app must start even when the telemetry set-up cannot
            report_once("setting up telemetry (the app runs without it)", exc)
