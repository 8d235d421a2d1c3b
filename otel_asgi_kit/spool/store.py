"""A bounded first-in-first-out store of encoded OTLP request bodies on disk, one file per body.

A body is written under a temporary name and renamed into place, so a crash
leaves the whole file or none. A 32-byte header (magic, version, item count,
creation time, length, CRC-32) lets a truncated or corrupt file be told
apart; it is removed and reported through ``on_corrupt``, and the rest is
delivered.

Layout: ``<root>/<owner>/<created_ns>-<seq>.otlp``, where ``<owner>`` is one
directory per process holding an exclusive ``flock`` on its ``lock`` file
while the process lives. A directory whose lock can be taken belongs to a
process that is gone (exit, crash, SIGKILL: the kernel drops the lock): its
files are moved into the live process's directory and sent by it (``adopt``).
Only the holder of a lock reads a directory, so within one process's life
nothing is sent twice; a body sent just before a crash, before its file was
removed, is sent again by the next owner (at least once).

Size is bounded by a ``Budget`` shared by the stores of one process: a body
that does not fit pushes out the oldest of its own store. Age is bounded by
``expire``. Memory holds one small ``Entry`` per file.
"""

from __future__ import annotations

import heapq
import os
import secrets
import shutil
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows: no hand-over between processes
    fcntl = None  # type: ignore[assignment]

_HEADER = struct.Struct("<4sHHIQQI")  # magic, version, reserved, count, created_ns, length, crc32
_MAGIC = b"OKSP"
_VERSION = 1
_SUFFIX = ".otlp"
_LOCK = "lock"


class CorruptFileError(ValueError):
    """A spool file whose header or checksum does not match its content."""


@dataclass(order=True)
class Entry:
    created_ns: int
    seq: int
    path: Path = field(compare=False)
    size: int = field(compare=False)  # on disk, header included
    count: int = field(compare=False)  # spans or log records in the body


class Budget:
    """Bytes on disk allowed to the stores of one process together."""

    def __init__(self, cap_bytes: int) -> None:
        self.cap = cap_bytes
        self.used = 0
        self.lock = threading.Lock()


def encode_file(body: bytes, count: int, created_ns: int) -> bytes:
    return _HEADER.pack(_MAGIC, _VERSION, 0, count, created_ns, len(body), zlib.crc32(body)) + body


def read_header(path: Path) -> tuple[int, int]:
    """(count, created_ns) from a file's header, checking its length against the file's size."""
    with open(path, "rb") as f:
        head = f.read(_HEADER.size)
        size = os.fstat(f.fileno()).st_size
    return _check_header(head, size)


def decode_file(data: bytes) -> tuple[bytes, int, int]:
    """(body, count, created_ns), or ``CorruptFileError``."""
    count, created_ns = _check_header(data[: _HEADER.size], len(data))
    body = data[_HEADER.size :]
    if zlib.crc32(body) != _HEADER.unpack(data[: _HEADER.size])[6]:
        raise CorruptFileError("checksum mismatch")
    return body, count, created_ns


def _check_header(head: bytes, size: int) -> tuple[int, int]:
    if len(head) < _HEADER.size:
        raise CorruptFileError(f"{size} bytes, shorter than a header")
    magic, version, _, count, created_ns, length, _ = _HEADER.unpack(head)
    if magic != _MAGIC or version != _VERSION:
        raise CorruptFileError("not a spool file of this version")
    if size != _HEADER.size + length:
        raise CorruptFileError(f"truncated: {size - _HEADER.size} of {length} body bytes")
    return count, created_ns


class SpoolStore:
    """The spool of one signal in one process. Thread-safe; every method may raise ``OSError``."""

    def __init__(
        self,
        root: Callable[[], Path],
        budget: Budget,
        *,
        on_corrupt: Callable[[Path, str], None] = lambda path, why: None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._root = root  # called at ``open``: a temp root is made only when first needed
        self.root: Path | None = None
        self._budget = budget
        self._on_corrupt = on_corrupt
        self._clock = clock
        self._lock = threading.Lock()
        self._heap: list[Entry] = []
        self._live: dict[int, Entry] = {}
        self._claimed: int | None = None
        self._seq = 0
        self._lock_fd: int | None = None
        self.dir: Path | None = None

    # -- ownership ---------------------------------------------------------------------------------

    def open(self) -> None:
        """Make and lock this process's directory, then adopt what gone processes left."""
        self.root = self._root()
        self.root.mkdir(parents=True, exist_ok=True)
        # Made under a hidden name and renamed once locked: a scan never sees it unlocked.
        staging = self.root / f".new-{os.getpid()}-{secrets.token_hex(4)}"
        staging.mkdir()
        fd = os.open(staging / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        final = self.root / staging.name.removeprefix(".new-")
        os.rename(staging, final)
        self._lock_fd, self.dir = fd, final
        self.adopt()

    def adopt(self) -> int:
        """Move the files of directories whose owner is gone into ours; how many files were taken."""
        if fcntl is None or self.dir is None or self.root is None:
            return 0
        taken = 0
        for other in sorted(self.root.iterdir()):
            if other == self.dir or other.name.startswith(".") or not other.is_dir():
                continue
            taken += self._adopt_one(other)
        return taken

    def _adopt_one(self, other: Path) -> int:
        try:
            fd = os.open(other / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return 0  # gone meanwhile, or not ours to read
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return 0  # its process is alive
            taken = 0
            for path in sorted(other.glob(f"*{_SUFFIX}")):
                if self._take(path):
                    taken += 1
            # Leftover temporary files of an interrupted write, then the directory itself.
            shutil.rmtree(other, ignore_errors=True)
            return taken
        finally:
            os.close(fd)

    def _take(self, path: Path) -> bool:
        try:
            count, created_ns = read_header(path)
        except CorruptFileError as exc:
            self._on_corrupt(path, str(exc))
            path.unlink(missing_ok=True)
            return False
        except OSError:
            return False
        assert self.dir is not None
        with self._lock:
            self._seq += 1
            target = self.dir / f"{created_ns:020d}-a{self._seq:06d}{_SUFFIX}"
            os.rename(path, target)
            self._index(Entry(created_ns, self._seq, target, target.stat().st_size, count))
        return True

    def _index(self, entry: Entry) -> None:
        heapq.heappush(self._heap, entry)
        self._live[entry.seq] = entry
        with self._budget.lock:
            self._budget.used += entry.size

    # -- the queue ---------------------------------------------------------------------------------

    def put(self, body: bytes, count: int) -> tuple[bool, list[Entry]]:
        """Store ``body``; (stored, the oldest entries pushed out to make room)."""
        assert self.dir is not None, "open() first"
        created_ns = self._clock()
        data = encode_file(body, count, created_ns)
        evicted: list[Entry] = []
        with self._lock:
            while self._over_budget(len(data)) and (victim := self._oldest_unclaimed()) is not None:
                self._forget(victim)
                victim.path.unlink(missing_ok=True)
                evicted.append(victim)
            if self._over_budget(len(data)):
                return False, evicted
            self._seq += 1
            name = f"{created_ns:020d}-{self._seq:06d}{_SUFFIX}"
            tmp = self.dir / f".tmp-{name}"
            try:
                with open(tmp, "xb") as f:
                    f.write(data)
                os.replace(tmp, self.dir / name)
            except OSError:
                tmp.unlink(missing_ok=True)
                raise
            self._index(Entry(created_ns, self._seq, self.dir / name, len(data), count))
        return True, evicted

    def claim_oldest(self) -> Entry | None:
        """The oldest entry, kept out of size eviction until ``release``/``remove``."""
        with self._lock:
            entry = self._oldest_unclaimed()
            self._claimed = entry.seq if entry is not None else None
            return entry

    def release(self) -> None:
        with self._lock:
            self._claimed = None

    def read(self, entry: Entry) -> bytes | None:
        """The body of ``entry``; ``None`` when the file is corrupt (then removed and reported)."""
        try:
            body, _, _ = decode_file(entry.path.read_bytes())
        except FileNotFoundError:  # removed from outside: nothing to send
            self.remove(entry)
            return None
        except CorruptFileError as exc:
            self._on_corrupt(entry.path, str(exc))
            self.remove(entry)
            return None
        return body

    def remove(self, entry: Entry) -> None:
        with self._lock:
            if self._claimed == entry.seq:
                self._claimed = None
            if self._live.get(entry.seq) is entry:
                self._forget(entry)
        entry.path.unlink(missing_ok=True)

    def expire(self, max_age_s: float) -> list[Entry]:
        """Remove and return the entries older than ``max_age_s``."""
        horizon = self._clock() - int(max_age_s * 1e9)
        gone: list[Entry] = []
        with self._lock:
            while (entry := self._oldest_unclaimed()) is not None and entry.created_ns < horizon:
                self._forget(entry)
                gone.append(entry)
        for entry in gone:
            entry.path.unlink(missing_ok=True)
        return gone

    def pending(self) -> tuple[int, int]:
        """(items, bytes) waiting."""
        with self._lock:
            return sum(e.count for e in self._live.values()), sum(e.size for e in self._live.values())

    def __len__(self) -> int:
        return len(self._live)

    def close(self, *, discard: bool) -> list[Entry]:
        """Release this process's directory (removing it when ``discard``); the entries left in it."""
        with self._lock:
            left = sorted(self._live.values())
            for entry in left:
                self._forget(entry)
        if self.dir is not None and (discard or not left):
            shutil.rmtree(self.dir, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # the next process may adopt what is left
            self._lock_fd = None
        return left

    # -- helpers, called with self._lock held ------------------------------------------------------

    def _over_budget(self, extra: int) -> bool:
        with self._budget.lock:
            return self._budget.used + extra > self._budget.cap

    def _oldest_unclaimed(self) -> Entry | None:
        heap = self._heap
        while heap and self._live.get(heap[0].seq) is not heap[0]:
            heapq.heappop(heap)  # removed earlier
        if not heap:
            return None
        if heap[0].seq != self._claimed:
            return heap[0]
        # The claimed one is being sent: the next oldest (rare: only under size pressure or expiry).
        rest = [e for e in heap[1:] if self._live.get(e.seq) is e]
        return min(rest) if rest else None

    def _forget(self, entry: Entry) -> None:
        del self._live[entry.seq]
        with self._budget.lock:
            self._budget.used -= entry.size
