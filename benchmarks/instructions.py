"""Instructions per request under callgrind: the overhead figures without this host's noise.

    python benchmarks/instructions.py [--frameworks starlette,aiohttp] [--variants bare,kit] [--path /items/1]
                                      [--requests 2000] [--rounds 2] [--base-src DIR]

Each variant is a real server (``run.py``'s commands: uvicorn + httptools +
uvloop for Starlette, ``web.run_app`` for aiohttp) started under valgrind's
callgrind with instrumentation off. A client on one keep-alive connection
sends ``--warm-up`` requests, turns instrumentation on (``callgrind_control``,
by the server's PID), sends ``--requests`` more, one at a time, and turns it
off. The figure is the server's main thread's instructions per request
(``--separate-threads``); the other threads (export, metrics) are shown apart.
Variants: ``bare``, ``kit`` and ``kit-tail`` (``run.py``'s tail sampling:
errors, slow requests and 10 % of the rest) per framework, and with ``--base-src`` each kit variant again
as ``kit-base`` / ``kit-tail-base``
(another checkout's ``otel_asgi_kit`` first on PYTHONPATH, while the installed
compiled part still fits it).

Instruction counts are not time, but they do not move with other tenants
of the machine: repeated rounds agree within about 1 % (the main thread
still sees some of the GIL hand-overs to the export thread), where
``run.py``'s rounds move by tens of %. The kit runs with ``run.py``'s kit
settings plus four that only stop work paced by the wall clock, which
callgrind's ~50x slower clock would otherwise charge to each request: the
loop-lag heartbeat and blocked-loop watchdog off, the batch exports sent
when a batch is full (not on a timer), the multi-worker snapshot every
10 minutes.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

from harness import ROOT, Sink, Variant, exit_cleanly_on_sigterm, free_port, stop_process

VENV_BIN = ROOT / ".venv" / "bin"
CLOCK_PACED_OFF = {
    "OTEL_ASGI_KIT_LOOP_LAG": "false",
    "OTEL_ASGI_KIT_BLOCKED_LOOP_THRESHOLD": "0",
    "OTEL_BSP_SCHEDULE_DELAY": "600000",
    "OTEL_BLRP_SCHEDULE_DELAY": "600000",
    "OTEL_ASGI_KIT_METRICS_SNAPSHOT_INTERVAL": "600000",
}


class Client:
    """One keep-alive connection; each request waits for its whole response (and checks it is a 200)."""

    def __init__(self, port: int, path: str, deadline: float, server: subprocess.Popen[bytes]) -> None:
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the server did not start (see its log)") from None
                time.sleep(0.5)
        self.buffer = b""
        self.request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: instructions\r\n\r\n".encode()

    def get(self, count: int) -> None:
        for _ in range(count):
            self.sock.sendall(self.request)
            while True:
                head, sep, rest = self.buffer.partition(b"\r\n\r\n")
                if sep:
                    lines = head.split(b"\r\n")
                    length = next(int(v.split(b":")[1]) for v in lines if v.lower().startswith(b"content-length:"))
                    if len(rest) >= length:
                        if not lines[0].startswith(b"HTTP/1.1 200"):
                            raise RuntimeError(f"the server answered {lines[0]!r}")
                        self.buffer = rest[length:]
                        break
                data = self.sock.recv(65536)
                if not data:
                    raise RuntimeError("the server closed the connection")
                self.buffer += data

    def close(self) -> None:
        self.sock.close()


def _instrumentation(pid: int, on: bool) -> None:
    done = subprocess.run(
        ["callgrind_control", "-i", "on" if on else "off", str(pid)], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise RuntimeError(f"callgrind_control failed: {done.stdout}{done.stderr}")


def _totals(outfile: str) -> list[int]:
    """Instructions per thread (main thread first) from callgrind's per-thread files."""
    totals = []
    for part in sorted(Path(outfile).parent.glob(Path(outfile).name + "-*")):  # -01 is the main thread
        found = [line for line in part.read_text().splitlines() if line.startswith("totals:")]
        if found:
            totals.append(int(found[-1].split()[1]))
    if not totals:
        raise RuntimeError(f"callgrind wrote no totals to {outfile}-*")
    return totals


def measure(
    variant: Variant, env: dict[str, str], path: str, requests: int, warm_up: int, out: str
) -> tuple[float, float]:
    """(main thread, other threads) instructions per request of one server run."""
    port = free_port()
    outfile = f"{out}/{variant.framework}-{variant.name}-{port}.out"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        "--trace-children=yes",  # opentelemetry-instrument execs the server
        "--separate-threads=yes",
        f"--callgrind-out-file={outfile}",
        *variant.command(port, access_log=False),
    ]
    with open(outfile + ".log", "wb") as log:
        server = subprocess.Popen(command, env=env, cwd=out, stdout=log, stderr=log, start_new_session=True)
    try:
        client = Client(port, path, time.monotonic() + 180, server)
        try:
            client.get(warm_up)
            _instrumentation(server.pid, True)
            client.get(requests)
            _instrumentation(server.pid, False)
        finally:
            client.close()
    except BaseException:
        print(Path(outfile + ".log").read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    finally:
        stop_process(server, signal.SIGINT, timeout=120)  # callgrind writes its files as the server exits
    totals = _totals(outfile)
    return totals[0] / requests, sum(totals[1:]) / requests


def main() -> int:
    exit_cleanly_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", default="starlette,aiohttp")
    parser.add_argument("--variants", default="bare,kit", help="bare, kit and/or kit-tail (bare is always run)")
    parser.add_argument("--path", default="/items/1", help="/items/1 (plain) or /log/1 (one log line)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warm-up", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--base-src", default=None, help="a checkout of another revision (its otel_asgi_kit/)")
    args = parser.parse_args()
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        print(f"error: {' and '.join(missing)} not found (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    frameworks = [f for f in args.frameworks.split(",") if f]
    if not frameworks or set(frameworks) - {"starlette", "aiohttp"}:
        print("error: --frameworks takes starlette and/or aiohttp", file=sys.stderr)
        return 2
    if args.base_src and not (Path(args.base_src) / "otel_asgi_kit" / "__init__.py").is_file():
        print(f"error: {args.base_src} has no otel_asgi_kit/", file=sys.stderr)
        return 2
    wanted = [v for v in args.variants.split(",") if v]
    if set(wanted) - {"bare", "kit", "kit-tail"}:
        print("error: --variants takes bare, kit and/or kit-tail", file=sys.stderr)
        return 2
    kits = [v for v in ("kit", "kit-tail") if v in wanted]
    names = ["bare", *[n for v in kits for n in (v, *([v + "-base"] if args.base_src else []))]]
    main_thread: dict[tuple[str, str], list[float]] = {(f, n): [] for f in frameworks for n in names}
    others: dict[tuple[str, str], list[float]] = {(f, n): [] for f in frameworks for n in names}
    with Sink(str(VENV_BIN / "python")) as sink, tempfile.TemporaryDirectory(prefix="instructions-") as out:
        for round_no in range(1, args.rounds + 1):
            for framework in frameworks:
                for name in names:
                    kit = name != "bare"
                    role = name.removesuffix("-base")
                    variant = Variant(role, VENV_BIN, launcher=kit, exports=kit, framework=framework)
                    env = variant.env(sink.endpoint if kit else None, None)
                    if kit:
                        env.update(CLOCK_PACED_OFF)
                    if name.endswith("-base"):
                        env["PYTHONPATH"] = str(Path(args.base_src).resolve())
                    main_ir, other_ir = measure(variant, env, args.path, args.requests, args.warm_up, out)
                    main_thread[framework, name].append(main_ir)
                    others[framework, name].append(other_ir)
                    print(
                        f"round {round_no} {framework:9s} {name:13s} main thread {main_ir:9,.0f}  "
                        f"other threads {other_ir:7,.0f} instructions/request",
                        flush=True,
                    )
    print(f"\n{args.path}, {args.requests} requests per run, {args.rounds} rounds (medians):")
    overhead: dict[str, float] = {}
    for framework in frameworks:
        bare = median(main_thread[framework, "bare"])
        print(f"  {framework}: bare {bare:,.0f}")
        for name in names[1:]:
            with_kit = median(main_thread[framework, name])
            rest = median(others[framework, name])
            added = with_kit - bare
            print(f"    {name:13s} {with_kit:9,.0f}  overhead +{added:,.0f} main thread, +{rest:,.0f} other threads")
            if name == "kit":
                overhead[framework] = added
    if len(overhead) == 2:
        ratio = overhead["aiohttp"] / overhead["starlette"]
        print(f"  aiohttp overhead ÷ ASGI (Starlette) overhead, main thread: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
