"""The disk spool of spans and log records while the collector is away (docs/spool.md).

``ProcessSpool`` is built once per process (per worker): it picks the
directory, shares one size budget between the signals and hands each
OTLP/HTTP span or log exporter an ``Outbox`` factory. Metrics need none:
they are cumulative, so the next successful push carries what a failed one
would have.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from otel_asgi_kit.declaring import var_of
from otel_asgi_kit.export.health import ExportHealth
from otel_asgi_kit.failsafe import warn
from otel_asgi_kit.settings import OtlpTarget, SpoolSettings
from otel_asgi_kit.spool.attempt import supports
from otel_asgi_kit.spool.outbox import Outbox
from otel_asgi_kit.spool.store import Budget, SpoolStore

_ITEMS = {"traces": "spans", "logs": "log records"}

OutboxFactory = Callable[[Any, Any, Callable[[bytes, int], bool]], "Outbox | None"]


class ProcessSpool:
    def __init__(self, settings: SpoolSettings, shutdown_timeout_s: float, health: ExportHealth) -> None:
        self._settings = settings
        self._health = health
        # Half the exit bound for sending what is spooled; the rest for the batch queues ahead of it.
        self._close_budget_s = shutdown_timeout_s / 2
        self._budget = Budget(settings.max_bytes)
        self._lock = threading.Lock()
        self._open_outboxes = 0
        self._corrupt_reported = False
        self.persistent = bool(settings.directory) and _usable(settings.directory or "")
        self._root = Path(settings.directory) if self.persistent and settings.directory else None
        self._temp_root: Path | None = None

    def exporter_kwargs(self, signal: str, target: OtlpTarget) -> dict[str, Any]:
        """``outbox=`` for the kit's OTLP/HTTP exporters; gRPC ones keep the SDK's own behaviour."""
        factory = self.factory(signal, target.endpoint) if target.protocol == "http/protobuf" else None
        return {} if factory is None else {"outbox": factory}

    def factory(self, signal: str, endpoint: str) -> OutboxFactory | None:
        """What ``DirectSpanExporter``/``DirectLogExporter`` take as ``outbox=``; None: no spool."""
        if not self._settings.enabled:
            return None

        def make(client: Any, metrics: Any, post: Callable[[bytes, int], bool]) -> Outbox | None:
            if not supports(client):
                warn(
                    f"the {signal} spool is off: this version of the OTLP exporter lacks what it relies on; "
                    "while the collector is away data is dropped as without a spool"
                )
                return None
            with self._lock:
                self._open_outboxes += 1
            return Outbox(
                signal=signal,
                items=_ITEMS.get(signal, signal),
                endpoint=endpoint,
                client=client,
                metrics=metrics,
                post=post,
                store=SpoolStore(self._signal_root(signal), self._budget, on_corrupt=self._corrupt),
                persistent=self.persistent,
                max_age_s=self._settings.max_age_s,
                replay_rate=self._settings.replay_rate,
                close_budget_s=self._close_budget_s,
                health=self._health,
                on_closed=self._outbox_closed,
            )

        return make

    def _signal_root(self, signal: str) -> Callable[[], Path]:
        root = self._root
        if root is not None:
            return lambda: root / signal
        return lambda: self.temp_root() / signal

    def temp_root(self) -> Path:
        """The per-process temp directory, made on first use (no outage: nothing on disk)."""
        with self._lock:
            if self._temp_root is None:
                self._temp_root = Path(tempfile.mkdtemp(prefix="otel-asgi-kit-spool-"))
            return self._temp_root

    def _outbox_closed(self) -> None:
        with self._lock:
            self._open_outboxes -= 1
            if self._open_outboxes > 0 or self._temp_root is None:
                return
            root, self._temp_root = self._temp_root, None
        shutil.rmtree(root, ignore_errors=True)

    def _corrupt(self, path: Path, why: str) -> None:
        if self._corrupt_reported:
            return
        self._corrupt_reported = True
        warn(f"skipped an unreadable spool file {path} ({why}); the rest is sent (later ones are skipped silently)")


def _usable(directory: str) -> bool:
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        warn(
            f"{var_of(SpoolSettings, 'directory').name}={directory!r} is not a usable directory ({type(exc).__name__}: "
            f"{exc.strerror or exc}); using a per-process temp spool, which does not outlive the process"
        )
        return False
    return True
