"""The resource shared by every signal of this process."""

from __future__ import annotations

import os
import platform
import socket
import uuid
from collections.abc import Mapping

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.version import __version__ as sdk_version

from otel_asgi_kit.settings import Settings, env_name
from otel_asgi_kit.version import __version__


def build_resource(settings: Settings) -> Resource:
    """Resource from settings only: the SDK's env detectors are not run twice."""
    attributes: dict[str, str | int] = {
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": sdk_version,
        "telemetry.distro.name": "otel-asgi-kit",
        "telemetry.distro.version": __version__,
        "host.name": socket.gethostname(),
        "process.runtime.name": platform.python_implementation().lower(),
        "process.runtime.version": platform.python_version(),
    }
    attributes.update(settings.resource_attributes)
    # OTEL_SERVICE_NAME wins over service.name in OTEL_RESOURCE_ATTRIBUTES (spec).
    if settings.sources.get(env_name("service_name")) == "env" or "service.name" not in attributes:
        attributes["service.name"] = settings.service_name
    # What differs per process: each worker is its own instance (built after a fork).
    attributes["service.instance.id"] = str(uuid.uuid4())
    attributes["process.pid"] = os.getpid()
    return StableResource(attributes)


class StableResource(Resource):
    """A Resource whose hash is computed once.

    The OTLP encoders group every span and log record by resource, and the
    SDK's ``Resource.__hash__`` JSON-serialises all attributes on each call —
    once per exported span, on the export thread that shares the app's core.
    Attributes of a Resource are immutable, so the hash can be kept.
    """

    def __init__(self, attributes: Mapping[str, str | int], schema_url: str | None = None) -> None:
        super().__init__(dict(attributes), schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other)
