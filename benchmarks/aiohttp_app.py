"""The benchmark app for aiohttp.web: the same routes as ``app.py``, served by ``web.run_app``.

    python benchmarks/aiohttp_app.py PORT [--access-log]

aiohttp's access log is on only with ``--access-log`` (the ``access-log``
scenario), like uvicorn's ``--no-access-log`` elsewhere.
"""

import logging
import sys

from aiohttp import web

log = logging.getLogger("bench")

_root = logging.getLogger()
if not any(isinstance(h, logging.StreamHandler) for h in _root.handlers):
    _root.addHandler(logging.StreamHandler(sys.stdout))
if _root.getEffectiveLevel() > logging.INFO:
    _root.setLevel(logging.INFO)


async def item(request: web.Request) -> web.Response:
    return web.json_response({"id": request.match_info["item_id"]})


async def logged_item(request: web.Request) -> web.Response:
    item_id = request.match_info["item_id"]
    log.info("looking up item %s", item_id)
    return web.json_response({"id": item_id})


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/items/{item_id}", item)
    app.router.add_get("/log/{item_id}", logged_item)
    app.router.add_get("/healthz", health)
    return app


if __name__ == "__main__":
    access = "--access-log" in sys.argv[2:]
    kwargs = {} if access else {"access_log": None}
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None, **kwargs)  # type: ignore[arg-type]
