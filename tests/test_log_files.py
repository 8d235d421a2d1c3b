"""Rotating log files: one per process, written off the caller's thread, nothing lost or doubled under load."""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from otel_asgi_kit.logs import handlers
from otel_asgi_kit.logs.ecs_json import EcsJsonFormatter
from otel_asgi_kit.logs.file_handler import RotatingFileLogHandler, per_process_path
from otel_asgi_kit.settings import load_settings
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.servers import kit_env, run_server


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("shop", logging.INFO, __file__, 1, message, (), None)


def _lines(directory: Path, pattern: str = "*.log*") -> list[str]:
    return [line for f in sorted(directory.glob(pattern)) for line in f.read_text().splitlines()]


def test_path_gets_the_pid() -> None:
    """app.log → app.<pid>.log; a name without suffix gets .<pid> at its end."""
    assert per_process_path("/var/log/app.log", 42) == Path("/var/log/app.42.log")
    assert per_process_path("/var/log/app", 42) == Path("/var/log/app.42")


def test_rotates_at_max_bytes_and_keeps_the_newest_backups(tmp_path: Path) -> None:
    """Files never pass max_bytes, .1 is the newest backup, and only `backups` of them are kept."""
    handler = RotatingFileLogHandler(str(tmp_path / "app.log"), max_bytes=1024, backups=3)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for i in range(200):
        handler.handle(_record(f"line {i:04d} " + "x" * 40))  # 51 bytes a line: 20 a file
    handler.close()
    base = per_process_path(str(tmp_path / "app.log"), os.getpid())
    files = [base, *(Path(f"{base}.{i}") for i in (1, 2, 3))]
    assert sorted(tmp_path.iterdir()) == sorted(files)
    assert all(f.stat().st_size <= 1024 for f in files)
    kept = [line.split()[1] for f in reversed(files) for line in f.read_text().splitlines()]
    # The newest 60-80 lines, in order, ending with the last one.
    assert kept == [f"{i:04d}" for i in range(200 - len(kept), 200)] and 60 <= len(kept) <= 80


def test_logging_never_waits_for_the_disk(tmp_path: Path) -> None:
    """With the writer stalled, 5,000 records are accepted at once; they reach the file when it resumes."""
    handler = RotatingFileLogHandler(str(tmp_path / "app.log"), max_bytes=10**7, backups=1)
    handler.setFormatter(logging.Formatter("%(message)s"))
    with handler._file_lock:  # what a stalled disk looks like to the writer thread
        started = time.perf_counter()
        for i in range(5000):
            handler.handle(_record(f"line {i}"))
        elapsed = time.perf_counter() - started
        assert _lines(tmp_path) == []
    handler.flush()
    assert _lines(tmp_path) == [f"line {i}" for i in range(5000)]
    assert elapsed < 2.0, elapsed  # about 10 µs a record: formatting only
    handler.close()


def test_a_full_queue_drops_and_warns_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """When the disk cannot keep up, lines beyond the queue are dropped and counted, with one warning."""
    handler = RotatingFileLogHandler(str(tmp_path / "app.log"), max_bytes=10**7, backups=1, queue_lines=10)
    handler.setFormatter(logging.Formatter("%(message)s"))
    with handler._file_lock:
        for i in range(50):
            handler.handle(_record(f"line {i}"))
    handler.close()
    written = _lines(tmp_path)
    assert handler.dropped == 50 - len(written) and 10 <= len(written) <= 12  # the writer may hold one batch
    assert capsys.readouterr().err.count("dropping lines instead of waiting") == 1


def test_lines_after_close_are_written_directly(tmp_path: Path) -> None:
    """Lines logged after the final flush (server shutdown messages) still reach the file."""
    handler = RotatingFileLogHandler(str(tmp_path / "app.log"), max_bytes=10**7, backups=1)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.handle(_record("before"))
    handler.close()
    handler.handle(_record("after"))
    assert _lines(tmp_path) == ["before", "after"]


def test_file_carries_the_same_json_as_stdout(tmp_path: Path) -> None:
    """The kit's file handler formats ECS JSON like stdout, installed from the settings."""
    settings = load_settings({"OTEL_ASGI_KIT_LOG_FILE": str(tmp_path / "app.log"), "OTEL_SERVICE_NAME": "shop"})
    handlers.install_log_handlers(settings, None)
    try:
        (file_handler,) = [h for h in handlers._installed if isinstance(h, RotatingFileLogHandler)]
        assert isinstance(file_handler.formatter, EcsJsonFormatter)
        logging.getLogger("shop").warning("to the file")
        file_handler.flush()
        (line,) = [json.loads(x) for x in _lines(tmp_path) if "to the file" in x]
        assert line["service.name"] == "shop" and line["log.level"] == "warning"
    finally:
        file_handler.close()
        handlers.install_log_handlers(load_settings({}), None)


def test_unwritable_path_warns_and_logging_goes_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A log file that cannot be opened costs the file only: one warning naming the variable, stdout stays."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    settings = load_settings({"OTEL_ASGI_KIT_LOG_FILE": str(blocker / "app.log")})
    handlers.install_log_handlers(settings, None)
    try:
        assert not [h for h in handlers._installed if isinstance(h, RotatingFileLogHandler)]
        assert "OTEL_ASGI_KIT_LOG_FILE=" in capsys.readouterr().err
    finally:
        handlers.install_log_handlers(load_settings({}), None)


def test_bad_sizes_name_the_variable() -> None:
    """`10MB` is not a byte count: the problem names the variable and the default is used."""
    settings = load_settings({"OTEL_ASGI_KIT_LOG_FILE_MAX_BYTES": "10MB", "OTEL_ASGI_KIT_LOG_FILE_BACKUPS": "0"})
    assert settings.log_file_max_bytes == 10 * 1024 * 1024 and settings.log_file_backups == 5
    assert [p.split("=")[0] for p in settings.problems] == [
        "OTEL_ASGI_KIT_LOG_FILE_MAX_BYTES",
        "OTEL_ASGI_KIT_LOG_FILE_BACKUPS",
    ]


REQUESTS = 1200
ITEM = re.compile(r"^looking up item (\d+)$")


@pytest.mark.server
@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_rotation_under_load_from_three_workers(server: str, tmp_path: Path, receiver: OtlpReceiver) -> None:
    """Three real workers rotate their own files under load; every line is in exactly one file, none lost."""
    env = kit_env(
        receiver.endpoint,
        OTEL_LOGS_EXPORTER="none",
        OTEL_ASGI_KIT_LOG_FILE=str(tmp_path / "logs" / "shop.log"),
        OTEL_ASGI_KIT_LOG_FILE_MAX_BYTES="32768",
        OTEL_ASGI_KIT_LOG_FILE_BACKUPS="1000",  # keep every rotated file: the count must be exact
    )
    extra = ("--access-logfile", "-") if server == "gunicorn" else ()
    with run_server(server, "examples.starlette_app:app", env, workers=3, extra_args=extra) as srv:
        port = int(srv.base_url.rsplit(":", 1)[1])

        def one(i: int) -> int:
            # A connection each, so all workers get a share; http.client: no TLS context to build per request.
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                connection.request("GET", f"/items/{i}")
                return connection.getresponse().status
            finally:
                connection.close()

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(one, range(REQUESTS))) == {200}
    # Stopped with SIGTERM: what was still queued was flushed at shutdown.
    stdout = srv.stdout()

    files = sorted((tmp_path / "logs").iterdir())
    docs = [json.loads(line) for line in _lines(tmp_path / "logs")]
    items = Counter(int(m.group(1)) for d in docs if (m := ITEM.match(d["message"])))
    assert items == Counter(range(REQUESTS)), "lost or doubled: " + str(
        {i: n for i, n in (Counter(range(REQUESTS)) - items + (items - Counter(range(REQUESTS)))).items()}
    )
    assert sum(d["message"] == "in a worker thread" for d in docs) == REQUESTS
    assert all(d.get("trace.id") for d in docs if ITEM.match(d["message"]))
    # Rotation happened, per process, within the size limit; at least two workers served.
    rotated = [f for f in files if re.fullmatch(r"shop\.\d+\.log\.\d+", f.name)]
    assert len(rotated) >= 10 and all(f.stat().st_size <= 32768 for f in files)
    worker_pids = {f.name.split(".")[1] for f in rotated}
    assert len(worker_pids) >= 2, [f.name for f in files]
    # The same JSON lines as stdout.
    stdout_items = sorted(line for line in stdout.splitlines() if '"looking up item' in line)
    file_items = sorted(line for line in _lines(tmp_path / "logs") if '"looking up item' in line)
    assert stdout_items == file_items
