"""The spool's on-disk store and outbox: order, bounds, corrupt files, hand-over between owners."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_asgi_kit.export.health import ExportHealth
from otel_asgi_kit.sdk.otlp_http import DirectSpanExporter
from otel_asgi_kit.settings import load_settings
from otel_asgi_kit.spool import ProcessSpool
from otel_asgi_kit.spool.attempt import supports
from otel_asgi_kit.spool.store import Budget, SpoolStore, encode_file
from tests.support.blackhole import refused_endpoint
from tests.support.otlp_receiver import OtlpReceiver, wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000_000_000

    def __call__(self) -> int:
        self.now += 1_000_000  # 1 ms per call: every body is younger than the last
        return self.now


def make_store(root: Path, cap: int = 10_000_000, clock: Clock | None = None) -> tuple[SpoolStore, list[str]]:
    corrupt: list[str] = []
    store = SpoolStore(
        lambda: root, Budget(cap), on_corrupt=lambda path, why: corrupt.append(why), clock=clock or Clock()
    )
    store.open()
    return store, corrupt


def drain(store: SpoolStore) -> Iterator[bytes]:
    while (entry := store.claim_oldest()) is not None:
        body = store.read(entry)
        store.remove(entry)
        if body is not None:
            yield body


def test_oldest_first(tmp_path: Path) -> None:
    """Bodies come back in the order they were put, each once."""
    store, _ = make_store(tmp_path)
    for i in range(5):
        store.put(f"body {i}".encode(), 1)
    assert list(drain(store)) == [f"body {i}".encode() for i in range(5)]
    assert store.claim_oldest() is None
    assert list(store.dir.glob("*.otlp")) == []  # type: ignore[union-attr]


def test_size_cap_drops_the_oldest(tmp_path: Path) -> None:
    """Past the size cap the oldest bodies are pushed out and returned for counting; disk use stays under it."""
    one = len(encode_file(b"x" * 100, 3, 0))
    store, _ = make_store(tmp_path, cap=3 * one)
    for i in range(5):
        stored, evicted = store.put(bytes([i]) * 100, 3)
        assert stored
        assert [e.count for e in evicted] == ([3] if i >= 3 else [])
    assert sum(p.stat().st_size for p in tmp_path.rglob("*.otlp")) <= 3 * one
    assert [b[0] for b in drain(store)] == [2, 3, 4]


def test_a_body_larger_than_the_cap_is_refused(tmp_path: Path) -> None:
    """A body that cannot fit even in an empty spool is not stored."""
    store, _ = make_store(tmp_path, cap=50)
    stored, evicted = store.put(b"y" * 100, 1)
    assert (stored, evicted) == (False, [])
    assert len(store) == 0


def test_budget_is_shared_between_signals(tmp_path: Path) -> None:
    """Two stores of one process share one size budget; each pushes out its own oldest."""
    one = len(encode_file(b"z" * 100, 1, 0))
    budget = Budget(3 * one)
    traces = SpoolStore(lambda: tmp_path / "traces", budget)
    logs = SpoolStore(lambda: tmp_path / "logs", budget)
    traces.open()
    logs.open()
    traces.put(b"z" * 100, 1)
    traces.put(b"z" * 100, 1)
    logs.put(b"z" * 100, 1)
    stored, evicted = traces.put(b"z" * 100, 1)
    assert stored and len(evicted) == 1
    assert (len(traces), len(logs)) == (2, 1)
    assert budget.used == 3 * one


def test_age_cap(tmp_path: Path) -> None:
    """``expire`` removes what is older than the age cap, and only that."""
    clock = Clock()
    store, _ = make_store(tmp_path, clock=clock)
    store.put(b"old", 2)
    clock.now += 10 * 1_000_000_000
    store.put(b"new", 1)
    gone = store.expire(5.0)
    assert [e.count for e in gone] == [2]
    assert list(drain(store)) == [b"new"]


def test_claimed_body_is_not_evicted(tmp_path: Path) -> None:
    """The body being sent is kept out of eviction; the next oldest goes instead."""
    one = len(encode_file(b"q" * 10, 1, 0))
    store, _ = make_store(tmp_path, cap=2 * one)
    store.put(b"a" * 10, 1)
    store.put(b"b" * 10, 1)
    claimed = store.claim_oldest()
    assert claimed is not None
    _, evicted = store.put(b"c" * 10, 1)
    assert [e.seq for e in evicted] == [claimed.seq + 1]
    assert store.read(claimed) == b"a" * 10
    store.remove(claimed)
    assert list(drain(store)) == [b"c" * 10]


def test_corrupt_and_truncated_files_are_skipped(tmp_path: Path) -> None:
    """A truncated file and a flipped byte are skipped and reported; the rest is delivered."""
    store, corrupt = make_store(tmp_path)
    for i in range(4):
        store.put(f"body {i}".encode() * 10, 1)
    files = sorted(store.dir.glob("*.otlp"))  # type: ignore[union-attr]
    files[1].write_bytes(files[1].read_bytes()[:-5])
    data = bytearray(files[2].read_bytes())
    data[-1] ^= 0xFF
    files[2].write_bytes(bytes(data))
    assert list(drain(store)) == [b"body 0" * 10, b"body 3" * 10]
    assert len(corrupt) == 2 and "truncated" in corrupt[0] and "checksum" in corrupt[1]


def test_a_gone_owner_is_adopted_in_order(tmp_path: Path) -> None:
    """What a closed (or dead) owner left is taken by the next store, oldest first; garbage is skipped."""
    clock = Clock()
    first, _ = make_store(tmp_path, clock=clock)
    for i in range(3):
        first.put(f"left {i}".encode(), 1)
    (first.dir / "00000000000000000001-000009.otlp").write_bytes(b"not a spool file")  # type: ignore[operator]
    assert len(first.close(discard=False)) == 3
    second, corrupt = make_store(tmp_path, clock=clock)
    second.put(b"mine", 1)
    assert list(drain(second)) == [b"left 0", b"left 1", b"left 2", b"mine"]
    assert len(corrupt) == 1
    assert [p.name for p in tmp_path.iterdir()] == [second.dir.name]  # type: ignore[union-attr]


def test_a_live_owner_is_left_alone(tmp_path: Path) -> None:
    """A directory whose owner still holds its lock is not adopted (nothing is sent twice)."""
    first, _ = make_store(tmp_path)
    first.put(b"first's", 1)
    second, _ = make_store(tmp_path)
    assert second.adopt() == 0
    assert len(second) == 0 and len(first) == 1


def test_discard_removes_the_directory(tmp_path: Path) -> None:
    """Closing with ``discard`` removes this process's directory and returns what was left, for counting."""
    store, _ = make_store(tmp_path)
    store.put(b"x", 7)
    left = store.close(discard=True)
    assert [e.count for e in left] == [7]
    assert list(tmp_path.iterdir()) == []


def test_the_sdk_client_still_has_what_the_spool_relies_on() -> None:
    """The stock OTLP/HTTP client offers ``_compress``, ``_submit``, ``_transport``, ``_timeout``."""
    assert supports(DirectSpanExporter(endpoint="http://127.0.0.1:9/v1/traces")._client)


def _spans(n: int) -> list:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": "spool-test"}))
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    for i in range(n):
        tracer.start_span(f"span {i}").end()
    return list(memory.get_finished_spans())


def test_exporter_spools_without_waiting_and_replays_in_order(tmp_path: Path) -> None:
    """Collector refusing: each export returns at once; when it listens, every span arrives, oldest first."""
    endpoint = refused_endpoint()
    settings = load_settings({"OTEL_ASGI_KIT_SPOOL_DIR": str(tmp_path), "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    spool = ProcessSpool(settings.spool, 4.0, ExportHealth())
    target = settings.otlp["traces"]
    exporter = DirectSpanExporter(endpoint=target.endpoint, timeout=2, **spool.exporter_kwargs("traces", target))
    spans = _spans(40)
    started = time.monotonic()
    for i in range(0, 40, 10):
        assert exporter.export(spans[i : i + 10]) is SpanExportResult.SUCCESS
    assert time.monotonic() - started < 1.0
    assert len(list(tmp_path.rglob("*.otlp"))) == 4
    with OtlpReceiver(port=int(endpoint.rsplit(":", 1)[1])) as receiver:
        wait_for(lambda: len(receiver.spans()) >= 40, timeout=20)
        exporter.shutdown()
    assert [s.name for s in receiver.spans()] == [f"span {i}" for i in range(40)]
    assert list(tmp_path.rglob("*.otlp")) == []


@pytest.mark.parametrize("persistent", [True, False])
def test_shutdown_with_no_collector_is_quick(
    tmp_path: Path, persistent: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """Never reachable: shutdown does not wait; a spool dir keeps the spans, a temp spool drops them, counted."""
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": refused_endpoint()}
    if persistent:
        env["OTEL_ASGI_KIT_SPOOL_DIR"] = str(tmp_path)
    settings = load_settings(env)
    spool = ProcessSpool(settings.spool, 4.0, ExportHealth())
    target = settings.otlp["traces"]
    exporter = DirectSpanExporter(endpoint=target.endpoint, **spool.exporter_kwargs("traces", target))
    exporter.export(_spans(5))
    temp_root = spool.temp_root() if not persistent else None
    started = time.monotonic()
    exporter.shutdown()
    assert time.monotonic() - started < 0.5
    err = capsys.readouterr().err
    if persistent:
        assert "5 spans stay spooled" in err
        assert len(list(tmp_path.rglob("*.otlp"))) == 1
    else:
        assert "dropped 5 spooled spans at exit" in err
        assert temp_root is not None and not temp_root.exists()


def test_unusable_spool_dir_is_reported_once_naming_the_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A spool dir that cannot be made: one line names the variable and value; the temp spool is used."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    settings = load_settings({"OTEL_ASGI_KIT_SPOOL_DIR": str(blocker / "spool")})
    spool = ProcessSpool(settings.spool, 4.0, ExportHealth())
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert f"OTEL_ASGI_KIT_SPOOL_DIR='{blocker / 'spool'}' is not a usable directory" in lines[0]
    assert not spool.persistent


def test_spool_off_leaves_the_stock_exporter() -> None:
    """OTEL_ASGI_KIT_SPOOL=false: no outbox, the SDK's own retries and drops."""
    settings = load_settings({"OTEL_ASGI_KIT_SPOOL": "false"})
    spool = ProcessSpool(settings.spool, 4.0, ExportHealth())
    assert spool.exporter_kwargs("traces", settings.otlp["traces"]) == {}
    grpc = load_settings({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert ProcessSpool(grpc.spool, 4.0, ExportHealth()).exporter_kwargs("traces", grpc.otlp["traces"]) == {}
