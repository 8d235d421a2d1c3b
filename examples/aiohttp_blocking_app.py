"""aiohttp.web app whose `/block` handler blocks the event loop for 0.3 s (the blocked-loop detector's demo)."""

import sys
import time

from aiohttp import web


async def block(request: web.Request) -> web.Response:
    time.sleep(0.3)  # a sync call in an async handler: every other request waits
    return web.Response(text="done")


app = web.Application()
app.router.add_get("/block", block)

if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]))
