"""Without the launcher: configure from the environment, wrap the app, run uvicorn.

python examples/programmatic.py 8000
"""

import logging
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import otel_asgi_kit

otel_asgi_kit.configure()
otel_asgi_kit.configure()  # safe to call twice

log = logging.getLogger("shop")


async def item(request: Request) -> JSONResponse:
    log.info("looking up item %s", request.path_params["item_id"])
    return JSONResponse({"id": request.path_params["item_id"]})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


app = otel_asgi_kit.instrument(Starlette(routes=[Route("/items/{item_id}", item), Route("/healthz", health)]))
app = otel_asgi_kit.instrument(app)  # idempotent

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]) if len(sys.argv) > 1 else 8000)
