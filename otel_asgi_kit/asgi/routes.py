"""The route template of a request, read from the scope after the app routed it.

Frameworks leave the matched route in the scope: Starlette/FastAPI put the
route object at ``scope["route"]``, Litestar the template at
``scope["path_template"]``. Quart, Nexios and Starlette mounts say nothing
usable, so ``frameworks`` hooks their routing to write ``ROUTE_KEY`` and
``MOUNT_PREFIX_KEY``. Nothing here matches a path against routes.
"""

from __future__ import annotations

from otel_asgi_kit.asgi.keys import ERROR_KEY, MOUNT_PREFIX_KEY, ROUTE_KEY
from otel_asgi_kit.types import Scope

__all__ = ["ERROR_KEY", "MOUNT_PREFIX_KEY", "ROUTE_KEY", "route_template"]


def route_template(scope: Scope, status: int) -> str | None:
    template = scope.get(ROUTE_KEY)
    if template is not None:
        return str(template)
    template = scope.get("path_template")
    if isinstance(template, str):
        return template
    route = scope.get("route")
    if route is None:
        return None
    path_format = getattr(route, "path_format", None)
    if not isinstance(path_format, str):
        return None
    prefix = str(scope.get(MOUNT_PREFIX_KEY, ""))
    if path_format.endswith("/{path}") and type(route).__name__ == "Mount":
        # The mount itself was the last match: its app had no route of its own
        # (static files, a bare app) or found nothing (a 404 we must not name).
        return None if status == 404 else f"{prefix}/{{path}}"
    return prefix + path_format
