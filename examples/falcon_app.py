"""Falcon (ASGI): a route with a typed parameter, a versioned copy of it, a failing route."""

import logging

import falcon
import falcon.asgi

log = logging.getLogger("shop")


class Item:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, item_id: int) -> None:
        log.info("looking up item %s", item_id)
        resp.media = {"id": item_id}


class Fail:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        raise RuntimeError("boom")


class Health:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = "ok"


app = falcon.asgi.App()
app.add_route("/items/{item_id:int}", Item())
# Falcon has no router prefixes: a versioned API is the same resource under a longer template.
app.add_route("/v1/items/{item_id:int}", Item())
app.add_route("/fail", Fail())
app.add_route("/healthz", Health())
