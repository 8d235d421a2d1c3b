"""The ``opentelemetry_distro`` entry point: picks the kit's configurator, skips doubling instrumentors."""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]

# The kit's middleware and aiohttp adapter are the one server span and the one set of HTTP
# metrics; these would add a second (and FastAPI's native one is switched off per request).
# The logging instrumentor would add a second handler and "0" trace ids.
REPLACED_INSTRUMENTORS = frozenset({"asgi", "fastapi", "starlette", "aiohttp-server", "logging"})


class KitDistro(BaseDistro):  # type: ignore[misc]
    def _configure(self, **kwargs: Any) -> None:
        # Another installed configurator (e.g. the stock distro's) must not win by entry-point order.
        os.environ.setdefault("OTEL_PYTHON_CONFIGURATOR", "otel_asgi_kit")
        # Outgoing calls' CLIENT spans and client metrics in the current HTTP conventions, like the kit's
        # SERVER spans (url.full, server.address, http.client.request.duration in seconds), not the old ones.
        os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        if entry_point.name in REPLACED_INSTRUMENTORS:
            return
        super().load_instrumentor(entry_point, **kwargs)
