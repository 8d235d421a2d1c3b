"""Rotating log files: one file per process, written by a thread so the event loop never waits on the disk.

A file per process, not one shared file: ``RotatingFileHandler`` is not safe
across processes (one worker renames the file while the others keep writing
into the renamed one, or rotate it a second time), and a lock shared between
workers would put a cross-process wait on every log call. With the pid in the
name (``app.log`` → ``app.<pid>.log``, backups ``app.<pid>.log.1`` …) no
process ever touches another's file. Log shippers read them all with a glob.

The record is formatted in the thread that logs it — the trace context lives
there — and the line is handed to a writer thread through a bounded queue:
the caller never waits on a write, a flush or a rotation. If the disk falls so
far behind that the queue is full, lines are dropped and counted (one warning),
rather than stalling requests. At shutdown the queue is drained and later
lines are written directly.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
from pathlib import Path

from otel_asgi_kit.failsafe import report_once, warn

QUEUE_LINES = 50_000
_BATCH_LINES = 512
_open: list[RotatingFileLogHandler] = []


def per_process_path(path: str, pid: int) -> Path:
    """``/var/log/app.log`` → ``/var/log/app.<pid>.log`` (a path without suffix gets ``.<pid>`` at the end)."""
    p = Path(path)
    return p.with_name(f"{p.stem}.{pid}{p.suffix}") if p.suffix else p.with_name(f"{p.name}.{pid}")


class _RotatingFile:
    """Appends lines; before a write would pass ``max_bytes``, shifts ``f`` → ``f.1`` → … → ``f.<backups>``.

    Unbuffered, one ``write`` per batch: a forked child inherits no half-written
    buffer that it could write a second time.
    """

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self._max_bytes = max_bytes
        self._backups = backups
        path.parent.mkdir(parents=True, exist_ok=True)
        self._stream = open(path, "ab", buffering=0)  # kept open for the life of the process
        self._size = self._stream.tell()

    def write(self, lines: list[bytes]) -> None:
        chunk: list[bytes] = []
        size = self._size
        for line in lines:
            if size and size + len(line) > self._max_bytes:
                self._write_all(b"".join(chunk))
                chunk.clear()
                self._rotate()
                size = 0
            chunk.append(line)
            size += len(line)
        self._write_all(b"".join(chunk))
        self._size = size

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self._stream.write(view) or 0 :]

    def _rotate(self) -> None:
        self._stream.close()
        name = str(self.path)
        for index in range(self._backups - 1, 0, -1):
            if os.path.exists(f"{name}.{index}"):
                os.replace(f"{name}.{index}", f"{name}.{index + 1}")
        os.replace(name, f"{name}.1")
        self._stream = open(name, "ab", buffering=0)
        self._size = 0


class RotatingFileLogHandler(logging.Handler):
    def __init__(self, path: str, max_bytes: int, backups: int, queue_lines: int = QUEUE_LINES) -> None:
        super().__init__()
        self.config = (path, max_bytes, backups)
        self._queue_lines = queue_lines
        self.dropped = 0
        self._start()
        _open.append(self)
        atexit.register(self.close)

    def _start(self) -> None:
        path, max_bytes, backups = self.config
        self.pid = os.getpid()
        self.file = _RotatingFile(per_process_path(path, self.pid), max_bytes, backups)
        self._file_lock = threading.Lock()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=self._queue_lines)
        self._direct = False
        self._writer = threading.Thread(target=self._write_forever, name="otel-asgi-kit-log-file", daemon=True)
        self._writer.start()

    def emit(self, record: logging.LogRecord) -> None:
        # ``Handler.handle`` holds ``self.lock`` here, which ``_stop_writer`` takes to switch modes.
        try:
            line = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
        except Exception:
            self.handleError(record)
            return
        if self._direct:
            try:
                self._write([line])  # at exit: the writer thread is done
            except Exception as exc:
                report_once(f"writing log file {self.file.path}", exc)
            return
        try:
            self._queue.put_nowait(line)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1:
                warn(f"log file {self.file.path}: the disk is not keeping up; dropping lines instead of waiting")

    def flush(self) -> None:
        """Wait until every line queued so far is on disk."""
        if not self._direct and self.pid == os.getpid():
            self._queue.join()

    def close(self) -> None:
        """Drain the queue and stop the writer; lines logged after this are written directly."""
        if self.pid == os.getpid():
            self._stop_writer()
        super().close()

    def _stop_writer(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # no emit is half-way between the check and the put
            if self._direct:
                return
            self._direct = True
        self._queue.put(None)
        self._writer.join()

    def _write_forever(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < _BATCH_LINES:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            lines = [line for line in batch if line is not None]
            try:
                self._write(lines)
            except Exception as exc:  # a full disk must not kill the writer: later lines may fit
                report_once(f"writing log file {self.file.path}", exc)
            finally:
                for _ in batch:
                    self._queue.task_done()
            if len(lines) < len(batch):
                return

    def _write(self, lines: list[bytes]) -> None:
        with self._file_lock:
            self.file.write(lines)


def open_log_file(path: str, max_bytes: int, backups: int) -> RotatingFileLogHandler:
    """This process's handler for ``path``: a new one, or the one already open (e.g. re-opened after a fork)."""
    for handler in _open:
        if handler.config == (path, max_bytes, backups) and handler.pid == os.getpid() and not handler._direct:
            return handler
    return RotatingFileLogHandler(path, max_bytes, backups)


def flush_log_files() -> None:
    """The final flush of every open log file (a step of the kit's bounded shutdown)."""
    for handler in list(_open):
        handler.close()


def _reopen_after_fork() -> None:
    # A forked worker (gunicorn) gets its own file, queue and writer: the parent's
    # writer thread does not exist in the child, and the parent's file is not its to write.
    for handler in _open:
        if not handler._direct:
            handler._start()


os.register_at_fork(after_in_child=_reopen_after_fork)
