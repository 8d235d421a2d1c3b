"""A real server exporting to a real OTLP receiver that goes away and comes back: nothing is lost."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.load import SteadyLoad
from tests.support.otlp_receiver import OtlpReceiver, wait_for
from tests.support.servers import BIN, ROOT, free_port, kit_env, run_server, stop

pytestmark = pytest.mark.server

APP = "examples.starlette_app:app"
ITEM_SPAN = "GET /items/{item_id}"


class Receivers:
    """The receivers that listened on one port, one after the other."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self.all: list[OtlpReceiver] = []
        self.current: OtlpReceiver | None = None

    def up(self) -> None:
        self.current = OtlpReceiver(port=self.port).__enter__()
        self.all.append(self.current)

    def down(self) -> None:
        assert self.current is not None
        self.current.__exit__(None, None, None)
        self.current = None

    def item_spans(self) -> list[str]:
        return [s.span_id for r in self.all for s in r.spans() if s.name == ITEM_SPAN]

    def item_traces(self) -> set[str]:
        return {s.trace_id for r in self.all for s in r.spans() if s.name == ITEM_SPAN}

    def handler_logs(self) -> list[str]:
        return [g.trace_id for r in self.all for g in r.logs() if str(g.body).startswith("looking up item")]


@contextmanager
def receivers() -> Iterator[Receivers]:
    rx = Receivers(free_port())
    try:
        yield rx
    finally:
        if rx.current is not None:
            rx.down()


def _get(base_url: str, n: int, *, recycling: bool = False) -> set[str]:
    """``n`` answered requests; their trace ids.

    ``recycling``: a worker that reached gunicorn's ``max_requests`` may close (or reset, when the next
    request was already on the wire) a connection it accepted without answering; that request is sent
    again, as a load balancer would.
    """
    with httpx.Client(timeout=10) as client:
        responses = [_answered(client, f"{base_url}/items/{i}", 3 if recycling else 1) for i in range(n)]
    assert [r.status_code for r in responses] == [200] * n
    return {r.headers["traceresponse"].split("-")[1] for r in responses}


def _answered(client: httpx.Client, url: str, tries: int) -> httpx.Response:
    for _ in range(tries - 1):
        try:
            return client.get(url)
        except (httpx.RemoteProtocolError, httpx.ReadError):  # closed, or reset ("connection reset by peer")
            time.sleep(0.1)
    return client.get(url)


def test_outage_under_steady_load_loses_nothing() -> None:
    """Collector gone 10 s at 100 req/s, then back: every request's span and handler log arrives, once."""
    with receivers() as rx:
        rx.up()
        with run_server("uvicorn", APP, kit_env(rx.endpoint)) as srv:
            load = SteadyLoad(srv.base_url + "/items/{}", rate=100, duration=14).start()
            time.sleep(2)
            rx.down()
            time.sleep(10)
            rx.up()
            samples = load.join()
            ok = [s for s in samples if s.status == 200]
            assert len(ok) == len(samples) == 1400
            wait_for(lambda: len(rx.item_spans()) >= len(ok) and len(rx.handler_logs()) >= len(ok), timeout=60)
            stderr = srv.stderr()
            metrics = httpx.get(f"http://127.0.0.1:{srv.admin_port}/metrics").text
    spans = rx.item_spans()
    assert len(spans) == len(ok), f"{len(spans)} of {len(ok)} spans arrived"
    assert len(set(spans)) == len(spans)  # nothing twice within one process's life
    assert rx.item_traces() == {s.trace_id for s in ok}
    assert len(rx.handler_logs()) == len(ok)
    assert "keeping them in the spool" in stderr and "works again; sending" in stderr
    assert 'error_type="queue_full"' not in metrics


def test_spool_dir_hands_over_to_the_next_process(tmp_path: Path) -> None:
    """Stopped while the collector is down: the next process with the same spool dir sends its spans."""
    spool = tmp_path / "spool"
    with receivers() as rx:
        env = kit_env(rx.endpoint, OTEL_ASGI_KIT_SPOOL_DIR=str(spool))
        with run_server("uvicorn", APP, env) as first:
            before = _get(first.base_url, 60)
            stop(first.process, signal.SIGTERM)
        assert "60 spans stay spooled" in first.stderr()
        assert list(spool.rglob("*.otlp"))
        rx.up()
        with run_server("uvicorn", APP, env) as second:
            after = _get(second.base_url, 5)
            arrived = wait_for(lambda: before | after <= rx.item_traces(), timeout=30)
        assert arrived, f"{len(before - rx.item_traces())} of 60 spans from the first process missing"
        assert len(rx.item_spans()) == 65
    assert list(spool.rglob("*.otlp")) == []


def test_corrupt_spool_file_is_skipped_with_one_warning(tmp_path: Path) -> None:
    """A truncated and a garbage file in the spool dir: one warning, everything else delivered."""
    spool = tmp_path / "spool"
    with receivers() as rx:
        env = kit_env(rx.endpoint, OTEL_ASGI_KIT_SPOOL_DIR=str(spool), OTEL_BSP_MAX_EXPORT_BATCH_SIZE="10")
        with run_server("uvicorn", APP, env) as first:
            with httpx.Client() as client:
                for i in range(40):
                    client.get(f"{first.base_url}/items/{i}")
                    if i % 10 == 9:
                        time.sleep(0.3)  # one batch (one spool file) of 10 per pause
            stop(first.process, signal.SIGTERM)
        files = sorted(spool.glob("traces/*/*.otlp"))
        assert len(files) >= 4
        files[0].write_bytes(files[0].read_bytes()[:-7])
        (files[0].parent / "00000000000000000000-000000.otlp").write_bytes(b"garbage")
        rx.up()
        with run_server("uvicorn", APP, env) as second:
            wait_for(lambda: not list(spool.glob("traces/*/*.otlp")), timeout=30)
            time.sleep(0.5)
            stderr = second.stderr()
    assert len([line for line in stderr.splitlines() if "skipped an unreadable spool file" in line]) == 1
    assert 40 - 10 <= len(rx.item_spans()) < 40  # only the truncated file's batch is lost


def _read_only_tmpfs(path: Path, size: str) -> list[str]:
    """A command prefix running the server with ``path`` on a tmpfs of ``size`` (``ro`` when size is 0)."""
    options = "ro,size=64k" if size == "0" else f"size={size}"
    return ["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o {options} none "{path}" && exec "$@"', "sh"]


def _server_in_namespace(prefix: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    cmd = [*prefix, str(BIN / "opentelemetry-instrument"), str(BIN / "uvicorn"), APP, "--port", str(port)]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )


needs_mount = pytest.mark.skipif(
    sys.platform != "linux" or shutil.which("unshare") is None, reason="needs Linux mount namespaces"
)


@needs_mount
@pytest.mark.parametrize(("size", "expected"), [("0", "OTEL_ASGI_KIT_SPOOL_DIR="), ("8k", "spool cannot be written")])
def test_unwritable_spool_falls_back_with_one_warning(tmp_path: Path, size: str, expected: str) -> None:
    """Spool dir read-only or full: one warning, the app serves, and what comes after the outage arrives."""
    if os.geteuid() != 0:
        pytest.fail("mounting a read-only or full tmpfs needs root (CI runs as root)")
    spool = tmp_path / "spool"
    spool.mkdir()
    port = free_port()
    with receivers() as rx:
        env = kit_env(rx.endpoint, OTEL_ASGI_KIT_SPOOL_DIR=str(spool), OTEL_EXPORTER_OTLP_TIMEOUT="1000")
        env["OTEL_EXPORTER_PROMETHEUS_PORT"] = str(free_port())
        process = _server_in_namespace(_read_only_tmpfs(spool, size), env, port)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(lambda: _up(base), timeout=30)
            _get(base, 30)
            time.sleep(1.5)  # export rounds while nothing listens
            rx.up()
            later = _get(base, 10)
            arrived = wait_for(lambda: later <= rx.item_traces(), timeout=30)
        finally:
            stop(process)
            stderr = process.stderr.read().decode() if process.stderr else ""
    assert arrived, stderr
    assert len([line for line in stderr.splitlines() if expected in line]) == 1, stderr


def _up(base: str) -> bool:
    try:
        return httpx.get(base + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_ctrl_c_with_no_collector_exits_within_a_second() -> None:
    """SIGINT with the collector never reachable: the whole process is gone within 1 s, what it held counted."""
    env = kit_env(f"http://127.0.0.1:{free_port()}")
    env.pop("OTEL_BSP_SCHEDULE_DELAY")
    env.pop("OTEL_BLRP_SCHEDULE_DELAY")  # the defaults: spans still queued at the signal
    with run_server("uvicorn", APP, env) as srv:
        _get(srv.base_url, 20)
        started = time.monotonic()
        stop(srv.process, signal.SIGINT, timeout=30)
        elapsed = time.monotonic() - started
        stderr = srv.stderr()
    assert elapsed < 1.0, f"exit took {elapsed:.2f}s:\n{stderr}"
    assert "dropped 20 spooled spans at exit" in stderr


def test_ctrl_c_with_a_collector_still_sends_everything() -> None:
    """SIGINT with the collector answering: every span queued at the signal is sent by the final flush."""
    with receivers() as rx:
        rx.up()
        env = kit_env(rx.endpoint, OTEL_BSP_SCHEDULE_DELAY="60000")
        with run_server("uvicorn", APP, env) as srv:
            ids = _get(srv.base_url, 50)
            assert rx.item_spans() == []
            stop(srv.process, signal.SIGINT)
        assert ids == rx.item_traces()


def test_restarted_gunicorn_workers_hand_over_their_spools(tmp_path: Path) -> None:
    """gunicorn recycling workers (max_requests) while the collector is down: every span arrives, once."""
    spool = tmp_path / "spool"
    with receivers() as rx:
        env = kit_env(rx.endpoint, OTEL_ASGI_KIT_SPOOL_DIR=str(spool))
        with run_server("gunicorn", APP, env, workers=2, extra_args=("--max-requests", "40")) as srv:
            ids = _get(srv.base_url, 150, recycling=True)  # each worker is replaced at least once
            time.sleep(1)
            rx.up()
            arrived = wait_for(lambda: ids <= rx.item_traces(), timeout=60)
            stderr = srv.stderr()
        assert arrived, f"{len(ids - rx.item_traces())} of 150 missing:\n{stderr}"
        assert "stay spooled" in stderr  # a recycled worker left its spool behind
        spans = rx.item_spans()
        assert len(spans) == len(set(spans))  # nothing sent twice
        assert len(spans) in (150, 151, 152)  # plus a request closed unanswered, if any
