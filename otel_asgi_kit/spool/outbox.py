"""Send one signal's encoded OTLP bodies; keep them on disk while the collector is away.

Called on the batch processor's export thread (never on the request path):

* while the collector answers, a body is POSTed once; a retryable failure
  (refused, reset, timed out, 429/502/503/504) keeps it in the spool instead
  of retrying for up to the whole export timeout, which is what let the
  batch queue overflow and drop;
* from then on every body goes straight to the spool, so the processor's
  queue drains onto disk as fast as it fills;
* a replay thread sends the oldest spooled body, backing off while it
  fails; once one gets through, new bodies are POSTed directly again and the
  spool is sent oldest first at ``replay_rate`` requests per second.

Counting, on the SDK's own ``otel_sdk_exporter_*_exported_total``: a body is
counted once delivered; the batch whose send revealed the outage is also
counted once as failed (that attempt did fail); what the spool drops
(size or age cap, unreadable file, temp spool at exit) is counted with
``error_type`` ``SpoolFullError``, ``SpoolExpiredError``, ``SpoolDiscardedError``.

When the spool cannot be written (disk full, read-only) the stock path
(``post``: the client's own retries) takes over, with one warning.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from otel_asgi_kit.export.health import ExportHealth
from otel_asgi_kit.failsafe import warn
from otel_asgi_kit.spool.attempt import Attempt, post_once
from otel_asgi_kit.spool.store import Entry, SpoolStore

_FIRST_BACKOFF_S = 0.5
_MAX_BACKOFF_S = 5.0
_ADOPT_EVERY_S = 30.0


class SpoolFullError(Exception):
    """Dropped: the spool's size cap pushed it out."""


class SpoolExpiredError(Exception):
    """Dropped: older than the spool's age cap."""


class SpoolDiscardedError(Exception):
    """Dropped at exit: the per-process spool does not outlive its process."""


class RejectedError(Exception):
    """The collector refused a spooled body for good (not retryable)."""


class Outbox:
    def __init__(
        self,
        *,
        signal: str,
        items: str,
        endpoint: str,
        client: Any,
        metrics: Any,
        post: Callable[[bytes, int], bool],
        store: SpoolStore,
        persistent: bool,
        max_age_s: float,
        replay_rate: float,
        close_budget_s: float,
        health: ExportHealth,
        on_closed: Callable[[], None] = lambda: None,
    ) -> None:
        self._signal, self._items, self._endpoint = signal, items, endpoint
        self._client, self._metrics, self._post = client, metrics, post
        self._store = store
        self._persistent = persistent
        self._max_age_s = max_age_s
        self._pace_s = 1.0 / replay_rate
        self._close_budget_s = close_budget_s
        self._health = health
        self._on_closed = on_closed
        self._healthy = True
        self._disabled = False
        self._opened = False
        self._open_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        if persistent:
            self._start_thread()  # it adopts what earlier processes left, off the start-up path

    # -- export thread -----------------------------------------------------------------------------

    def send(self, body: bytes, count: int) -> bool:
        """False when the batch is lost (already counted); True when sent or kept."""
        if self._disabled or self._pid != os.getpid():
            return self._post(body, count)
        if self._healthy:
            with self._metrics.export_operation(count) as result:
                attempt = post_once(self._client, body)
                if attempt.ok:
                    return True
                result.error = attempt.error or RejectedError(attempt.describe())
                if attempt.status_code is not None:
                    result.error_attrs = {"http.response.status_code": attempt.status_code}
            if not attempt.retryable:
                return False
            self._healthy = False
            kept = self._keep(body, count)
            self._went_away(attempt)
            return kept
        return self._keep(body, count)

    def _keep(self, body: bytes, count: int) -> bool:
        try:
            self._ensure_open()
            stored, evicted = self._store.put(body, count)
        except OSError as exc:
            self._disabled = True
            self._health.warn_limited(
                "spool-unwritable",
                f"the spool cannot be written ({type(exc).__name__}: {exc.strerror or exc}); while the collector "
                "is away, spans and log records are kept in memory only, as without a spool",
            )
            return self._post(body, count)
        self._dropped(evicted, SpoolFullError)
        self._start_thread()
        self._wake.set()
        if not stored:
            self._count_drop(count, SpoolFullError)
            self._report_drop(count, SpoolFullError)
        return stored

    def _ensure_open(self) -> None:
        with self._open_lock:
            if not self._opened:
                self._store.open()
                self._opened = True

    def _went_away(self, attempt: Attempt) -> None:
        if not self._disabled:
            self._health.warn_limited(
                f"spool:{self._signal}",
                f"cannot export {self._signal} to {self._endpoint}: {attempt.describe()}; keeping them in the "
                f"spool under {self._store.root} and sending them when it answers",
            )

    # -- replay thread -----------------------------------------------------------------------------

    def _start_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"otel-asgi-kit-spool-{self._signal}", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            if self._persistent:
                self._ensure_open()
            self._replay()
        except Exception as exc:  # a bug here must not take the exporter down with it
            warn(f"the {self._signal} spool stopped replaying: {type(exc).__name__}: {exc}")

    def _replay(self) -> None:
        backoff = _FIRST_BACKOFF_S
        next_adopt = time.monotonic() + _ADOPT_EVERY_S
        while not self._stop.is_set():
            self._dropped(self._store.expire(self._max_age_s), SpoolExpiredError)
            if self._persistent and time.monotonic() >= next_adopt:
                self._store.adopt()
                next_adopt = time.monotonic() + _ADOPT_EVERY_S
            entry = self._store.claim_oldest()
            if entry is None:
                self._wake.wait(_ADOPT_EVERY_S if self._persistent else None)
                self._wake.clear()
                continue
            attempt = self._deliver(entry)
            if attempt is None or attempt.ok:
                backoff = _FIRST_BACKOFF_S
                self._stop.wait(self._pace_s)
            else:
                self._store.release()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)

    def _deliver(self, entry: Entry) -> Attempt | None:
        """Send one spooled body; ``None`` when there was nothing to send (unreadable file)."""
        body = self._store.read(entry)
        if body is None:
            return None
        attempt = post_once(self._client, body)
        if attempt.ok:
            self._store.remove(entry)
            with self._metrics.export_operation(entry.count):
                pass
            if not self._healthy:
                self._healthy = True
                items, size = self._store.pending()
                warn(
                    f"export of {self._signal} to {self._endpoint} works again; sending {items} spooled "
                    f"{self._items} ({size / 1e6:.1f} MB), oldest first"
                )
        elif attempt.retryable:
            self._healthy = False
        else:
            self._store.remove(entry)
            self._count_drop(entry.count, RejectedError, attempt)
            self._health.warn_limited(
                f"spool-rejected:{self._signal}",
                f"the collector at {self._endpoint} refused {entry.count} spooled {self._items} "
                f"({attempt.describe()}); dropped",
            )
        return attempt

    # -- drops -------------------------------------------------------------------------------------

    def _dropped(self, entries: list[Entry], why: type[Exception]) -> None:
        if entries:
            count = sum(e.count for e in entries)
            self._count_drop(count, why)
            self._report_drop(count, why)

    def _count_drop(self, count: int, why: type[Exception], attempt: Attempt | None = None) -> None:
        with self._metrics.export_operation(count) as result:
            result.error = why(attempt.describe() if attempt else "")
            if attempt is not None and attempt.status_code is not None:
                result.error_attrs = {"http.response.status_code": attempt.status_code}

    def _report_drop(self, count: int, why: type[Exception]) -> None:
        reason = "its size cap (OTEL_ASGI_KIT_SPOOL_MAX_SIZE)" if why is SpoolFullError else "its age cap"
        self._health.warn_limited(
            f"spool-drop:{self._signal}:{why.__name__}",
            f"the {self._signal} spool dropped its {count} oldest {self._items} at {reason} (counted in "
            f'otel_sdk_exporter_*_exported_total{{error_type="{why.__name__}"}} on /metrics)',
        )

    # -- exit --------------------------------------------------------------------------------------

    def close(self) -> None:
        """Send what is spooled while the collector answers (bounded), then keep or discard the rest."""
        self._stop.set()
        self._wake.set()
        try:
            if self._opened and self._pid == os.getpid():
                self._finish()
        finally:
            self._on_closed()

    def _finish(self) -> None:
        deadline = time.monotonic() + self._close_budget_s
        if self._thread is not None:
            self._thread.join(min(0.2, self._close_budget_s))
        # Never reachable, or gone again: no waiting on it at exit.
        while self._healthy and time.monotonic() < deadline and (entry := self._store.claim_oldest()) is not None:
            attempt = self._deliver(entry)
            if attempt is not None and not attempt.ok:
                self._store.release()
                break
        left = self._store.close(discard=not self._persistent)
        if not left:
            return
        count = sum(e.count for e in left)
        if self._persistent:
            warn(f"{count} {self._items} stay spooled in {self._store.root} for the next process to send")
            return
        self._count_drop(count, SpoolDiscardedError)
        warn(
            f"dropped {count} spooled {self._items} at exit: the collector at {self._endpoint} did not answer "
            "(OTEL_ASGI_KIT_SPOOL_DIR on a volume keeps them for the next process)"
        )

    @property
    def directory(self) -> Path | None:
        return self._store.dir
