"""The benchmark app: Starlette, one route with a path parameter, one that logs a line.

Every variant prints the handler's log line on stdout once: the kit with its
JSON handler, the others with the plain handler added below when the root
logger has no console handler (the stock distro only adds its OTLP handler).
"""

import logging
import sys

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

log = logging.getLogger("bench")

_root = logging.getLogger()
if not any(isinstance(h, logging.StreamHandler) for h in _root.handlers):
    _root.addHandler(logging.StreamHandler(sys.stdout))
if _root.getEffectiveLevel() > logging.INFO:
    _root.setLevel(logging.INFO)


async def item(request: Request) -> JSONResponse:
    return JSONResponse({"id": request.path_params["item_id"]})


async def logged_item(request: Request) -> JSONResponse:
    item_id = request.path_params["item_id"]
    log.info("looking up item %s", item_id)
    return JSONResponse({"id": item_id})


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(
    routes=[
        Route("/items/{item_id}", item),
        Route("/log/{item_id}", logged_item),
        Route("/healthz", health),
    ]
)
