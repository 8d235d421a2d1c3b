"""Process and CPython GC metrics under their semantic-convention names, read only at collection.

A curated set, unlike ``opentelemetry-instrumentation-system-metrics``: no
``system.*`` (that is the node exporter's job), no deprecated
``process.runtime.*``, nothing system-wide or expensive. Sources are
``getrusage`` (CPU times, context switches), one read of ``/proc/self/stat``
per collection (memory, threads), ``/proc/self/fd`` and ``gc.get_stats()``;
no extra dependency. Where ``/proc`` is missing (macOS) the memory and thread
metrics are left out rather than approximated.
"""

from __future__ import annotations

import gc
import os
import resource
from collections.abc import Callable, Iterable
from pathlib import Path
from time import monotonic

from opentelemetry.metrics import CallbackOptions, Meter, Observation

_USER = {"cpu.mode": "user"}
_SYSTEM = {"cpu.mode": "system"}
_VOLUNTARY = {"process.context_switch.type": "voluntary"}
_INVOLUNTARY = {"process.context_switch.type": "involuntary"}
_GENERATIONS = [{"cpython.gc.generation": g} for g in range(len(gc.get_stats()))]
_PROC_STAT = Path("/proc/self/stat")
_STAT_TTL_S = 0.1  # the three callbacks of one collection share one read


def _fd_dir() -> str | None:
    for path in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(path):
            return path
    return None


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _ProcStat:
    """``/proc/self/stat``, read at most once per collection."""

    def __init__(self) -> None:
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._read_at = -1.0
        self._fields: list[str] = []

    def fields(self) -> list[str]:
        now = monotonic()
        if now - self._read_at > _STAT_TTL_S:
            text = _PROC_STAT.read_text()
            # The command name (field 2) may hold spaces and parentheses: split after its last ")".
            self._fields = text[text.rindex(")") + 2 :].split()
            self._read_at = now
        return self._fields

    # Field n of proc(5) is at index n - 3 once the pid and command are cut off.
    def threads(self) -> int:
        return int(self.fields()[17])

    def virtual_bytes(self) -> int:
        return int(self.fields()[20])

    def rss_bytes(self) -> int:
        return int(self.fields()[21]) * self._page


class _CpuUtilization:
    """CPU time since the previous collection / (wall time * CPUs available)."""

    def __init__(self) -> None:
        self._cpus = _available_cpus()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self._last = (monotonic(), usage.ru_utime, usage.ru_stime)

    def __call__(self, options: CallbackOptions) -> Iterable[Observation]:
        now = monotonic()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        then, user, system = self._last
        self._last = (now, usage.ru_utime, usage.ru_stime)
        span = (now - then) * self._cpus
        if span <= 0:
            return []
        return [
            Observation((usage.ru_utime - user) / span, _USER),
            Observation((usage.ru_stime - system) / span, _SYSTEM),
        ]


def _cpu_time(options: CallbackOptions) -> Iterable[Observation]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return [Observation(usage.ru_utime, _USER), Observation(usage.ru_stime, _SYSTEM)]


def _context_switches(options: CallbackOptions) -> Iterable[Observation]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return [Observation(usage.ru_nvcsw, _VOLUNTARY), Observation(usage.ru_nivcsw, _INVOLUNTARY)]


def _gc_stat(key: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(stats[key], attrs) for stats, attrs in zip(gc.get_stats(), _GENERATIONS, strict=False)]

    return callback


def register_runtime_metrics(meter: Meter) -> None:
    """Observable instruments on ``meter``: read at each collection, nothing in between."""
    meter.create_observable_counter(
        "process.cpu.time", [_cpu_time], unit="s", description="Total CPU seconds broken down by CPU mode."
    )
    meter.create_observable_gauge(
        "process.cpu.utilization",
        [_CpuUtilization()],
        unit="1",
        description="CPU time since the last collection, divided by the elapsed time and the CPUs available.",
    )
    meter.create_observable_counter(
        "process.context_switches",
        [_context_switches],
        unit="{context_switch}",
        description="Number of times the process has been context switched.",
    )
    if _PROC_STAT.exists():
        stat = _ProcStat()
        meter.create_observable_up_down_counter(
            "process.memory.usage",
            [lambda options: [Observation(stat.rss_bytes())]],
            unit="By",
            description="The amount of physical memory in use (RSS).",
        )
        meter.create_observable_up_down_counter(
            "process.memory.virtual",
            [lambda options: [Observation(stat.virtual_bytes())]],
            unit="By",
            description="The amount of committed virtual memory.",
        )
        meter.create_observable_up_down_counter(
            "process.thread.count",
            [lambda options: [Observation(stat.threads())]],
            unit="{thread}",
            description="Process threads count (all OS threads, not only Python's).",
        )
    fd_dir = _fd_dir()
    if fd_dir is not None:
        meter.create_observable_up_down_counter(
            "process.unix.file_descriptor.count",
            # Listing the directory opens one descriptor of its own.
            [lambda options: [Observation(len(os.listdir(fd_dir)) - 1)]],
            unit="{file_descriptor}",
            description="Number of UNIX file descriptors in use by the process.",
        )
    for key, name, unit, description in (
        ("collections", "cpython.gc.collections", "{collection}", "Times a generation was collected."),
        ("collected", "cpython.gc.collected_objects", "{object}", "Objects collected inside a generation."),
        (
            "uncollectable",
            "cpython.gc.uncollectable_objects",
            "{object}",
            "Objects found uncollectable inside a generation.",
        ),
    ):
        meter.create_observable_counter(name, [_gc_stat(key)], unit=unit, description=description)
