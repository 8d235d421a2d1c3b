"""What this process is for: serving requests, supervising processes that do, or a helper of Python's.

Under ``opentelemetry-instrument`` every Python process started from the
server inherits the launcher's ``sitecustomize`` and so runs ``configure``:
the workers, but also the server's supervisor (gunicorn's master, Granian's main process, uvicorn's
``--workers``/``--reload`` parent, hypercorn's ``--workers`` parent) and
multiprocessing's helpers (the resource tracker, the forkserver). Only
processes that serve requests build providers and export; a supervisor
holds the admin port and the stdout logs; a helper does nothing at all.
Decided from the command line alone, before the server parses it.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from typing import Literal

Role = Literal["server", "supervisor", "helper"]

_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver", "multiprocessing.semaphore_tracker")


def process_role(
    argv: Sequence[str] | None = None,
    orig_argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Role:
    argv = list(sys.argv if argv is None else argv)
    orig = list(getattr(sys, "orig_argv", argv) if orig_argv is None else orig_argv)
    environ = os.environ if environ is None else environ
    if any(helper in arg for arg in orig for helper in _HELPERS):
        return "helper"
    program = os.path.basename(argv[0]) if argv else ""
    if program == "gunicorn" or (argv and argv[0].endswith(os.path.join("gunicorn", "__main__.py"))):
        return "supervisor"
    if program == "granian" or (argv and argv[0].endswith(os.path.join("granian", "__main__.py"))):
        # Granian serves from forked workers only, even with one (threads on free-threaded builds).
        return "server" if sysconfig.get_config_var("Py_GIL_DISABLED") else "supervisor"
    if program in ("uvicorn", "hypercorn") or (argv and argv[0].endswith(os.path.join("uvicorn", "__main__.py"))):
        prefix = "UVICORN" if "uvicorn" in argv[0] else "HYPERCORN"
        reload = "--reload" in argv or environ.get(f"{prefix}_RELOAD", "").lower() in ("1", "true")
        if (program != "hypercorn" and reload) or _workers(argv, environ, prefix) > 1:
            return "supervisor"
    return "server"


def _workers(argv: Sequence[str], environ: Mapping[str, str], prefix: str) -> int:
    """``--workers N`` / ``-w N`` / ``--workers=N``, else the servers' environment variables, else 1."""
    text = environ.get(f"{prefix}_WORKERS") or environ.get("WEB_CONCURRENCY") or "1"
    for i, arg in enumerate(argv):
        if arg in ("--workers", "-w") and i + 1 < len(argv):
            text = argv[i + 1]
        elif arg.startswith("--workers="):
            text = arg.split("=", 1)[1]
    try:
        return int(text)
    except ValueError:
        return 1
