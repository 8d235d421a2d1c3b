"""The resource shared by every signal of this process."""

from __future__ import annotations

import os
import platform
import socket
import uuid

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.version import __version__ as sdk_version

from otel_asgi_kit.settings import OTEL_SERVICE_NAME, Settings
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
    if settings.sources.get(OTEL_SERVICE_NAME.name) == "env" or "service.name" not in attributes:
        attributes["service.name"] = settings.service_name
    return Resource(attributes).merge(process_resource())


def process_resource() -> Resource:
    """What differs per process: each worker is its own instance (fresh after fork)."""
    return Resource({"service.instance.id": str(uuid.uuid4()), "process.pid": os.getpid()})
