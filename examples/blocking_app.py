"""Starlette app whose `/block` handler blocks the event loop for 0.3 s (the blocked-loop detector's demo)."""

import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def block(request: Request) -> PlainTextResponse:
    time.sleep(0.3)  # a sync call in an async handler: every other request waits
    return PlainTextResponse("done")


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/block", block), Route("/healthz", health)])
