"""Service A calls service B: one route per HTTP client library, B echoes the trace header it received.

Run two processes of this app under ``opentelemetry-instrument``; A gets B's base
URL from ``DOWNSTREAM_URL``. ``GET /call/httpx`` on A calls ``GET /echo`` on B
and answers with B's answer, so the caller sees the ``traceparent`` B was sent.
"""

import asyncio
import json
import os
import urllib.parse

import aiohttp
import httpx
import requests
import urllib3
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

DOWNSTREAM_URL = os.environ.get("DOWNSTREAM_URL", "http://127.0.0.1:8001")
_pool = urllib3.PoolManager()


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"traceparent": request.headers.get("traceparent")})


async def _with_httpx(url: str) -> object:
    async with httpx.AsyncClient() as client:
        return (await client.get(url)).json()


async def _with_aiohttp(url: str) -> object:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.json()


def _with_requests(url: str) -> object:
    return requests.get(url, timeout=5).json()


def _with_urllib3(url: str) -> object:
    return json.loads(_pool.request("GET", url, timeout=5).data)


async def call(request: Request) -> JSONResponse:
    client = request.path_params["client"]
    url = urllib.parse.urljoin(DOWNSTREAM_URL, "/echo")
    if client == "httpx":
        answer = await _with_httpx(url)
    elif client == "aiohttp":
        answer = await _with_aiohttp(url)
    elif client == "requests":
        answer = await asyncio.to_thread(_with_requests, url)  # to_thread keeps the trace context
    elif client == "urllib3":
        answer = await asyncio.to_thread(_with_urllib3, url)
    else:
        return JSONResponse({"error": f"unknown client {client!r}"}, status_code=404)
    return JSONResponse(answer)


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(
    routes=[
        Route("/call/{client}", call),
        Route("/echo", echo),
        Route("/healthz", health),
    ]
)
