"""Process and GC metrics: semantic-convention names, units, attributes and plausible values."""

from __future__ import annotations

import gc
import os
import resource
import sys
import threading
import time
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_asgi_kit.runtime_metrics import register_runtime_metrics

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

EXPECTED = {
    "process.cpu.time": "s",
    "process.cpu.utilization": "1",
    "process.context_switches": "{context_switch}",
    "process.memory.usage": "By",
    "process.memory.virtual": "By",
    "process.thread.count": "{thread}",
    "process.unix.file_descriptor.count": "{file_descriptor}",
    "cpython.gc.collections": "{collection}",
    "cpython.gc.collected_objects": "{object}",
    "cpython.gc.uncollectable_objects": "{object}",
}


def collect(reader: InMemoryMetricReader) -> dict[str, Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def by_attr(metric: Any, key: str) -> dict[Any, float]:
    return {p.attributes[key]: p.value for p in metric.data.data_points}


def single(metric: Any) -> float:
    (point,) = metric.data.data_points
    assert dict(point.attributes or {}) == {}
    return float(point.value)


@pytest.fixture
def reader() -> InMemoryMetricReader:
    reader = InMemoryMetricReader()
    register_runtime_metrics(MeterProvider(metric_readers=[reader]).get_meter("test"))
    return reader


@linux
def test_names_and_units(reader: InMemoryMetricReader) -> None:
    """Exactly the curated set, semconv names and units; no system.* and no process.runtime.*."""
    metrics = collect(reader)
    assert {name: m.unit for name, m in metrics.items()} == EXPECTED
    assert not [n for n in metrics if n.startswith(("system.", "process.runtime."))]
    monotonic = {n for n, m in metrics.items() if getattr(m.data, "is_monotonic", False)}
    assert monotonic == {
        "process.cpu.time",
        "process.context_switches",
        "cpython.gc.collections",
        "cpython.gc.collected_objects",
        "cpython.gc.uncollectable_objects",
    }


@linux
def test_cpu_time_and_utilization_follow_work(reader: InMemoryMetricReader) -> None:
    """Burning ~0.3 s of CPU raises user time by about that and utilization above zero."""
    first = by_attr(collect(reader)["process.cpu.time"], "cpu.mode")
    started = time.monotonic()
    assert set(first) == {"user", "system"}
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    metrics = collect(reader)
    wall = time.monotonic() - started
    second = by_attr(metrics["process.cpu.time"], "cpu.mode")
    spent = second["user"] + second["system"] - first["user"] - first["system"]
    assert 0.25 <= spent <= 1.0
    utilization = by_attr(metrics["process.cpu.utilization"], "cpu.mode")
    assert set(utilization) == {"user", "system"}
    expected = spent / (wall * len(os.sched_getaffinity(0)))  # the wall time is longer on a busy machine
    assert sum(utilization.values()) == pytest.approx(expected, rel=0.2)


@linux
def test_memory_threads_and_descriptors(reader: InMemoryMetricReader) -> None:
    """RSS near getrusage's peak, virtual above RSS; a new thread and a new descriptor are counted."""
    metrics = collect(reader)
    rss = single(metrics["process.memory.usage"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert 10e6 < rss <= peak * 1.05
    assert single(metrics["process.memory.virtual"]) > rss
    threads = single(metrics["process.thread.count"])
    fds = single(metrics["process.unix.file_descriptor.count"])
    assert threads >= threading.active_count()
    assert fds == len(os.listdir("/proc/self/fd")) - 1

    stop = threading.Event()
    extra = threading.Thread(target=stop.wait)
    extra.start()
    r, w = os.pipe()
    try:
        time.sleep(0.15)  # past the /proc/self/stat cache
        metrics = collect(reader)
        assert single(metrics["process.thread.count"]) == threads + 1
        assert single(metrics["process.unix.file_descriptor.count"]) == fds + 2
    finally:
        stop.set()
        extra.join()
        os.close(r)
        os.close(w)


@linux
def test_context_switches(reader: InMemoryMetricReader) -> None:
    """Voluntary and involuntary context switches, counted from getrusage; sleeping adds voluntary ones."""
    before = by_attr(collect(reader)["process.context_switches"], "process.context_switch.type")
    assert set(before) == {"voluntary", "involuntary"}
    for _ in range(5):
        time.sleep(0.001)
    after = by_attr(collect(reader)["process.context_switches"], "process.context_switch.type")
    assert after["voluntary"] >= before["voluntary"] + 5


def test_gc_per_generation(reader: InMemoryMetricReader) -> None:
    """One point per generation; a full collection of a reference cycle shows in generation 2."""
    before = by_attr(collect(reader)["cpython.gc.collections"], "cpython.gc.generation")
    assert set(before) == set(range(len(gc.get_stats())))

    class Node:
        ref: Any = None

    a, b = Node(), Node()
    a.ref, b.ref = b, a
    del a, b
    collected_before = by_attr(collect(reader)["cpython.gc.collected_objects"], "cpython.gc.generation")
    gc.collect()
    metrics = collect(reader)
    after = by_attr(metrics["cpython.gc.collections"], "cpython.gc.generation")
    assert after[2] == before[2] + 1
    collected = by_attr(metrics["cpython.gc.collected_objects"], "cpython.gc.generation")
    assert collected[2] >= collected_before[2] + 2
    assert set(by_attr(metrics["cpython.gc.uncollectable_objects"], "cpython.gc.generation")) == set(before)


@linux
def test_collection_is_cheap(reader: InMemoryMetricReader) -> None:
    """A whole collection of every runtime metric (SDK included) costs about a millisecond of CPU at most."""
    collect(reader)
    start = time.thread_time()
    for _ in range(50):
        collect(reader)
    per_collection = (time.thread_time() - start) / 50
    assert per_collection < 0.0015, per_collection
