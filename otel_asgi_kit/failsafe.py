"""Containment for telemetry failures: reported once per place, never raised into the app."""

from __future__ import annotations

import sys
import threading
import traceback

_seen: set[str] = set()
_lock = threading.Lock()


def report_once(where: str, exc: BaseException) -> None:
    """One stderr line for the first failure at ``where``; later ones are silent.

    Written to stderr directly, not through ``logging``: the log pipeline may be
    the thing that is failing.
    """
    with _lock:
        if where in _seen:
            return
        _seen.add(where)
    try:
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        sys.stderr.write(f"otel_asgi_kit: {where} failed and was contained: {detail}\n")
    except Exception:  # noqa: S110 - stderr itself may be gone at exit
        pass


def warn(message: str) -> None:
    """One line on stderr, prefixed so operators can grep for it."""
    try:
        sys.stderr.write(f"otel_asgi_kit: {message}\n")
        sys.stderr.flush()
    except Exception:  # noqa: S110
        pass


_said: set[str] = set()


def warn_once(message: str) -> None:
    """``warn``, once per process for the same message (a forked worker inherits what its parent said)."""
    with _lock:
        if message in _said:
            return
        _said.add(message)
    warn(message)
