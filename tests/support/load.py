"""A steady request rate against a running server, in a background thread, with per-request timings."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class Sample:
    started: float  # time.monotonic()
    seconds: float
    status: int
    trace_id: str


@dataclass
class SteadyLoad:
    """``rate`` GETs per second of ``url_format.format(i)`` for ``duration`` seconds, started with ``start``."""

    url_format: str
    rate: float
    duration: float
    concurrency: int = 32
    samples: list[Sample] = field(default_factory=list)
    _thread: threading.Thread | None = None

    def start(self) -> SteadyLoad:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    def join(self) -> list[Sample]:
        assert self._thread is not None
        self._thread.join(self.duration + 120)
        return self.samples

    async def _run(self) -> None:
        # A fixed set of workers, each taking the next request when it is due: a slow server makes the
        # load fall behind schedule instead of piling up thousands of waiting requests in the client.
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        total = int(self.rate * self.duration)
        begin = time.monotonic()
        counter = iter(range(total))
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:

            async def worker() -> None:
                for i in counter:
                    delay = begin + i / self.rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await self._one(client, i)

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    async def _one(self, client: httpx.AsyncClient, i: int) -> None:
        started = time.monotonic()
        try:
            response = await client.get(self.url_format.format(i))
            status = response.status_code
            trace = response.headers.get("traceresponse", "--").split("-")[1]
        except httpx.HTTPError:
            status, trace = 0, ""
        self.samples.append(Sample(started, time.monotonic() - started, status, trace))


def p99(samples: list[Sample]) -> float:
    values = sorted(s.seconds for s in samples)
    return values[min(len(values) - 1, int(len(values) * 0.99))] if values else float("nan")
