"""Event-loop health: a lag histogram and a blocked-loop watchdog, off the request path.

A heartbeat callback on each watched loop reschedules itself every ``period``
and records how late it ran (``python.asyncio.event_loop.lag``). When the
detector is on, a daemon thread per loop sleeps until the next moment the loop
could count as blocked (last heartbeat + threshold). If no heartbeat ran by
then, the loop is blocked right now: the thread reads the loop thread's stack
(``sys._current_frames``), waits for the next heartbeat to learn the duration
and logs one warning on ``otel_asgi_kit.loop`` inside the trace of the request
the blocked task serves (``core.active`` maps tasks to their request's span).
The request path does nothing else for any of this.

The duration is the gap between two heartbeats, so it is at most one period
(threshold / 2) longer than the block itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import selectors
import sys
import threading
import traceback
import weakref
from asyncio import AbstractEventLoop, TimerHandle
from collections.abc import Callable
from time import monotonic
from types import CodeType, FrameType
from typing import Any

from opentelemetry import trace
from opentelemetry.metrics import Meter, MeterProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext

from otel_asgi_kit.core import active
from otel_asgi_kit.failsafe import report_once
from otel_asgi_kit.settings import Settings
from otel_asgi_kit.version import SCOPE_NAME, SCOPE_VERSION

LOGGER_NAME = "otel_asgi_kit.loop"
LAG_METRIC = "python.asyncio.event_loop.lag"
BLOCKED_METRIC = "python.asyncio.event_loop.blocked"
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LAG_INTERVAL_S = 0.5  # heartbeat period when only the lag is measured
_MIN_PERIOD_S = 0.01
STILL_BLOCKED_S = 10.0  # a block this long is reported once while it lasts, then again when it ends

_SELECTORS_FILE = selectors.__file__
_HANDLE_RUN = asyncio.events.Handle._run.__code__

logger = logging.getLogger(LOGGER_NAME)


class LoopHealth:
    """Watches event loops of this process; one per process (see ``start_loop_health``)."""

    def __init__(
        self,
        meter: Meter,
        *,
        lag: bool = True,
        blocked_threshold_s: float = 0.1,
        lag_interval_s: float = LAG_INTERVAL_S,
    ) -> None:
        if blocked_threshold_s > 0:
            # Below two heartbeats an idle loop would look blocked between beats.
            blocked_threshold_s = max(blocked_threshold_s, 2 * _MIN_PERIOD_S)
        self.threshold = blocked_threshold_s
        # The watchdog needs frequent heartbeats: a block is seen only once the
        # gap since the last one passes the threshold.
        self.period = (
            min(lag_interval_s, max(blocked_threshold_s / 2, _MIN_PERIOD_S))
            if blocked_threshold_s > 0
            else lag_interval_s
        )
        self.lag = (
            meter.create_histogram(
                LAG_METRIC,
                unit="s",
                description="How late the event loop ran a callback due at a given time (sampled by a heartbeat).",
                explicit_bucket_boundaries_advisory=list(LAG_BUCKETS),
            )
            if lag
            else None
        )
        self.blocked = (
            meter.create_counter(
                BLOCKED_METRIC,
                unit="{block}",
                description="Times the event loop ran no callback for longer than the blocked-loop threshold.",
            )
            if blocked_threshold_s > 0
            else None
        )
        if self.blocked is not None:
            self.blocked.add(0)  # the series exists from the start, so rate()/increase() work before a block
        self._monitors: weakref.WeakKeyDictionary[AbstractEventLoop, _LoopMonitor] = weakref.WeakKeyDictionary()
        self._last: Callable[[], AbstractEventLoop | None] = lambda: None
        self._lock = threading.Lock()

    def ensure(self) -> None:
        """Watch the running loop, if any; after the first call per loop, one weakref call and a compare."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no asyncio loop (e.g. trio)
            return
        if self._last() is not loop:
            self.watch(loop)

    def watch(self, loop: AbstractEventLoop) -> None:
        """Start watching ``loop`` (from any thread); a second call for the same loop does nothing."""
        with self._lock:
            if loop not in self._monitors:
                monitor = _LoopMonitor(self, loop)
                self._monitors[loop] = monitor
                loop.call_soon_threadsafe(monitor.start, loop)
            self._last = weakref.ref(loop)

    def shutdown(self) -> None:
        with self._lock:
            monitors = list(self._monitors.values())
            self._monitors.clear()
            self._last = lambda: None
        for monitor in monitors:
            monitor.stop()

    def forget_after_fork(self) -> None:
        """In a forked child: the watchdog threads are gone; loops are watched afresh."""
        self._lock = threading.Lock()
        for monitor in list(self._monitors.values()):
            monitor.stopped = True
        self._monitors = weakref.WeakKeyDictionary()
        self._last = lambda: None


class _LoopMonitor:
    def __init__(self, health: LoopHealth, loop: AbstractEventLoop) -> None:
        self.health = health
        self.period = health.period
        self.loop_ref = weakref.ref(loop)
        self.stopped = False
        self.paused = False  # the loop was seen stopped: the next heartbeat's lag is not real
        # Written by the loop thread in this order (due, last_beat, beats), read by the watchdog.
        self.due = 0.0
        self.last_beat = 0.0
        self.beats = 0
        self.thread_id = 0
        self.base_code: CodeType | None = None
        self.handle: TimerHandle | None = None
        self.wakeup = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, loop: AbstractEventLoop) -> None:
        """First callback, on the loop's thread: learn the thread and the loop's own frame."""
        if self.stopped:
            return
        self.thread_id = threading.get_ident()
        caller = sys._getframe(1)
        # asyncio runs callbacks from Handle._run inside _run_once; C loops (uvloop)
        # from the Python frame that entered the loop.
        if caller.f_code is _HANDLE_RUN and caller.f_back is not None:
            caller = caller.f_back
        self.base_code = caller.f_code
        now = monotonic()
        self.due = now + self.period
        self.last_beat = now
        self.handle = loop.call_later(self.period, self.beat, loop)
        if self.health.threshold > 0:
            self.thread = threading.Thread(target=self.run_watchdog, name="otel-asgi-kit-loop-watchdog", daemon=True)
            self.thread.start()

    def beat(self, loop: AbstractEventLoop) -> None:
        if self.stopped:
            return
        now = monotonic()
        lag = now - self.due
        self.due = now + self.period
        self.last_beat = now
        self.beats += 1
        self.handle = loop.call_later(self.period, self.beat, loop)
        if self.paused:
            self.paused = False
            return
        histogram = self.health.lag
        if histogram is not None:
            try:
                histogram.record(lag if lag > 0 else 0.0)
            except Exception as exc:
                report_once("recording the event-loop lag", exc)

    def stop(self) -> None:
        self.stopped = True
        self.wakeup.set()
        loop = self.loop_ref()
        handle = self.handle
        if loop is not None and handle is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(handle.cancel)
            except RuntimeError:  # closed meanwhile
                pass

    # The watchdog thread.

    def run_watchdog(self) -> None:
        threshold = self.health.threshold
        while not self.stopped:
            delay = self.last_beat + threshold - monotonic()
            if delay > 0:
                self.wakeup.wait(delay)
                continue
            loop = self.loop_ref()
            if loop is None or loop.is_closed():
                return
            if not loop.is_running() or self.paused:
                self.paused = True  # a stopped loop is not blocked
                self.wakeup.wait(self.period)
                continue
            try:
                self.episode()
            except Exception as exc:  # the watchdog must never take anything down
                report_once("watching the event loop", exc)
                self.wait_for_beat(self.beats)

    def episode(self) -> None:
        seen, started = self.beats, self.last_beat
        if monotonic() - started <= self.health.threshold:
            return  # a heartbeat ran meanwhile
        frame = sys._current_frames().get(self.thread_id)
        loop = self.loop_ref()
        span_context = active.span_context_on(loop) if loop is not None else None
        del loop
        captured = self.beats == seen  # stack and task were read while the loop was still blocked
        frames = self.frames_above_loop(frame) if captured and frame is not None else []
        del frame
        if captured and not frames:
            # The loop's own frame is on top: it is waiting for I/O, not running
            # code; the process itself was not scheduled (CPU throttling, suspend).
            self.wait_for_beat(seen)
            return
        if not captured:
            span_context = None
        stack = traceback.StackSummary.extract(((f, f.f_lineno) for f in reversed(frames)), lookup_lines=True)
        del frames
        if not self.wait_for_beat(seen, stack, span_context, started):
            return
        duration = self.last_beat - started
        if self.health.blocked is not None:
            self.health.blocked.add(1)
        _report(duration, stack, span_context)

    def wait_for_beat(
        self,
        seen: int,
        stack: traceback.StackSummary | None = None,
        span_context: SpanContext | None = None,
        started: float = 0.0,
    ) -> bool:
        """Until the next heartbeat: True when it ran, False when the loop stopped or closed."""
        still_reported = False
        while self.beats == seen:
            if self.stopped:
                return False
            self.wakeup.wait(self.period)
            loop = self.loop_ref()
            if loop is None or loop.is_closed() or not loop.is_running():
                return False
            if stack is not None and not still_reported and monotonic() - started > STILL_BLOCKED_S:
                _report(monotonic() - started, stack, span_context, still=True)
                still_reported = True
        return True

    def frames_above_loop(self, top: FrameType) -> list[FrameType]:
        """The loop thread's frames above the loop itself, innermost first; empty when it is idle."""
        frames: list[FrameType] = []
        base = self.base_code
        f: FrameType | None = top
        while f is not None and f.f_code is not base:
            frames.append(f)
            f = f.f_back
        if f is None:
            return frames  # the loop's frame was not found: keep the whole stack
        if all(x.f_code.co_filename == _SELECTORS_FILE for x in frames):
            return []
        return frames


def _report(
    duration: float, stack: traceback.StackSummary, span_context: SpanContext | None, *, still: bool = False
) -> None:
    if not logger.isEnabledFor(logging.WARNING):
        return
    top = stack[-1] if stack else None
    where = f" in {top.name} ({top.filename}:{top.lineno})" if top is not None else " (stack not captured)"
    ms = round(duration * 1000)
    msg = "event loop blocked for %d ms so far%s" if still else "event loop blocked for %d ms%s"
    stack_text = "Stack (most recent call last):\n" + "".join(stack.format()) if stack else None
    extra: dict[str, Any] = {"event_loop.blocked_ms": ms}
    if stack_text is not None:
        extra["code.stacktrace"] = stack_text  # the OTLP handler drops stack_info, keeps extras
    if top is not None:  # where the loop was blocked, also for OTLP handlers that leave code.* out
        extra["code.function.name"] = top.name
        extra["code.file.path"] = top.filename
        extra["code.line.number"] = top.lineno
    record = logger.makeRecord(
        logger.name,
        logging.WARNING,
        top.filename if top is not None else "(unknown file)",
        (top.lineno or 0) if top is not None else 0,
        msg,
        (ms, where),
        None,
        func=top.name if top is not None else None,
        extra=extra,
    )
    record.stack_info = stack_text  # what the stdout formatters print as the stack
    if span_context is None:
        logger.handle(record)
        return
    with trace.use_span(NonRecordingSpan(span_context)):
        logger.handle(record)


_current: LoopHealth | None = None


def start_loop_health(settings: Settings, meter_provider: MeterProvider) -> LoopHealth | None:
    """Set up this process's loop health from settings; loops are watched by ``ensure_loop_monitor``.

    Also watches the running loop when called inside one. Returns ``None`` when
    both the lag and the detector are off.
    """
    global _current
    if _current is not None:
        _current.shutdown()
        _current = None
    if not settings.loop_lag and settings.blocked_loop_threshold_ms <= 0:
        return None
    meter = meter_provider.get_meter(SCOPE_NAME, SCOPE_VERSION)
    _current = LoopHealth(meter, lag=settings.loop_lag, blocked_threshold_s=settings.blocked_loop_threshold_ms / 1000)
    _current.ensure()
    return _current


def ensure_loop_monitor() -> None:
    """Watch the running event loop (first call per loop); meant for server start and lifespan."""
    health = _current
    if health is not None:
        try:
            health.ensure()
        except Exception as exc:
            report_once("starting the event-loop monitor", exc)


def stop_loop_health() -> None:
    global _current
    if _current is not None:
        _current.shutdown()
        _current = None


def _after_fork_in_child() -> None:
    if _current is not None:
        _current.forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
