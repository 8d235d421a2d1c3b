"""The ``opentelemetry_configurator`` entry point, run by ``opentelemetry-instrument``."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk._configuration import _BaseConfigurator

from otel_asgi_kit.bootstrap import configure


class KitConfigurator(_BaseConfigurator):
    def _configure(self, **kwargs: Any) -> None:
        configure()
