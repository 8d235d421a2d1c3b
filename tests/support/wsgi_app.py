"""A WSGI app: what the kit cannot trace, served by a server it otherwise hooks."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("content-type", "text/plain")])
    return [b"ok"]
