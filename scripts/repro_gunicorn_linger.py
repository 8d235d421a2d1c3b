"""Repro: a gunicorn worker under the kit that lingers after the master's SIGTERM/SIGINT.

Each iteration starts ``opentelemetry-instrument gunicorn`` with 2 workers (the
tests' environment: ``OTEL_METRICS_EXPORTER=prometheus,otlp``, long batch
delays, an OTLP endpoint that is a live receiver or a closed port), sends
concurrent requests, signals the master and measures how long it takes to
exit, and each worker. A stop slower than ``--linger`` seconds counts as a
linger; with ``--dump`` the workers still alive then are dumped with py-spy.
Everything is bounded: at most ``--graceful-timeout`` + 15 s per iteration,
after which the process group we started is killed.

    PYTHONPATH=. .venv/bin/python scripts/repro_gunicorn_linger.py -n 12
    PYTHONPATH=. .venv/bin/python scripts/repro_gunicorn_linger.py -n 12 --worker uvicorn
    PYTHONPATH=. .venv/bin/python scripts/repro_gunicorn_linger.py -n 12 --env OTEL_ASGI_KIT_LOOP_LAG=false \
        --env OTEL_ASGI_KIT_BLOCKED_LOOP_THRESHOLD=0
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

WORKERS = {
    # worker class, app, readiness path, request path
    "aiohttp": ("aiohttp.GunicornWebWorker", "examples.aiohttp_app:app", "/health", "/items/{}"),
    "uvicorn": ("uvicorn.workers.UvicornWorker", "examples.fastapi_app:app", "/healthz", "/items/{}"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for its parent)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def iteration(args: argparse.Namespace, sig: int, endpoint: str, logdir: Path, i: int) -> dict[str, object]:
    worker_class, app, ready, path = WORKERS[args.worker]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        OTEL_SERVICE_NAME="shop",
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_METRICS_EXPORTER="prometheus,otlp",
        OTEL_BSP_SCHEDULE_DELAY="60000",
        OTEL_BLRP_SCHEDULE_DELAY="60000",
        OTEL_METRIC_EXPORT_INTERVAL="600000",
        OTEL_EXPORTER_PROMETHEUS_PORT=str(free_port()),
        PYTHONUNBUFFERED="1",
    )
    for item in args.env:
        key, _, value = item.partition("=")
        env[key] = value
    cmd = [
        str(BIN / "gunicorn"),
        app,
        "-k",
        worker_class,
        "-b",
        f"127.0.0.1:{port}",
        "-w",
        "2",
        "--graceful-timeout",
        str(args.graceful_timeout),
        *args.arg,
    ]
    if not args.no_kit:
        cmd = [str(BIN / "opentelemetry-instrument"), *cmd]
    out = open(logdir / f"{i:02d}.out", "wb")
    err = open(logdir / f"{i:02d}.err", "wb")
    master = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    result: dict[str, object] = {"sig": signal.Signals(sig).name}
    try:
        deadline = time.monotonic() + 30
        if args.when == "booting":
            # Signal as soon as the second worker exists: it is still setting itself up.
            while len(workers := children(master.pid)) < 2:
                if master.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start; see {logdir / f'{i:02d}.err'}")
                time.sleep(0.005)
            result["ok"] = "-"
        else:
            while True:
                if master.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start; see {logdir / f'{i:02d}.err'}")
                try:
                    httpx.get(base + ready, timeout=1.0)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            workers = children(master.pid)
            limits = httpx.Limits(max_keepalive_connections=0)  # a connection each: both workers get a share
            with httpx.Client(base_url=base, timeout=10, limits=limits) as client:
                with ThreadPoolExecutor(10) as pool:
                    codes = list(pool.map(lambda n: client.get(path.format(n)).status_code, range(args.requests)))
            result["ok"] = sum(c == 200 for c in codes)
            workers = sorted(set(workers) | set(children(master.pid)))
        start = time.monotonic()
        master.send_signal(sig)
        gone: dict[int, float] = {}
        dumped = False
        limit = start + args.graceful_timeout + 15
        while time.monotonic() < limit:
            now = time.monotonic()
            for w in workers:
                if w not in gone and not alive(w):
                    gone[w] = now - start
            if master.poll() is not None:
                break
            if args.dump and not dumped and now - start > args.linger + 0.5:
                dumped = True
                for w in workers:
                    if w not in gone and alive(w):
                        dump = subprocess.run(
                            [str(BIN / "py-spy"), "dump", "--locals", "--pid", str(w)]
                            if args.locals
                            else [str(BIN / "py-spy"), "dump", "--pid", str(w)],
                            capture_output=True,
                            text=True,
                            timeout=20,
                        )
                        text = dump.stdout + dump.stderr
                        (logdir / f"{i:02d}.dump.{w}").write_text(text)
                        print(f"--- py-spy dump of lingering worker {w} (iteration {i + 1}):\n{text}", flush=True)
            time.sleep(0.02)
        result["master_s"] = time.monotonic() - start if master.poll() is not None else None
        result["workers_s"] = [round(gone.get(w, float("nan")), 2) for w in workers]
        result["rc"] = master.poll()
    finally:
        if master.poll() is None:
            os.killpg(master.pid, signal.SIGKILL)  # the group we started
            master.wait(10)
        out.close()
        err.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--iterations", type=int, default=12)
    parser.add_argument("--worker", choices=sorted(WORKERS), default="aiohttp")
    parser.add_argument("--signals", default="TERM,INT", help="signals to the master, in turn (TERM,INT)")
    parser.add_argument("--graceful-timeout", type=int, default=10)
    parser.add_argument("--linger", type=float, default=3.0, help="a stop slower than this is a linger (s)")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument(
        "--when",
        choices=["served", "booting"],
        default="served",
        help="signal after the requests (served), or as soon as the second worker is forked (booting)",
    )
    parser.add_argument("--endpoint", choices=["receiver", "closed"], default="receiver")
    parser.add_argument("--no-kit", action="store_true", help="run gunicorn without opentelemetry-instrument")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server, repeatable")
    parser.add_argument("--arg", action="append", default=[], help="an extra gunicorn argument, repeatable")
    parser.add_argument("--dump", action="store_true", help="py-spy dump the workers still alive at a linger")
    parser.add_argument("--locals", action="store_true", help="with --dump: local variables too")
    args = parser.parse_args()
    if args.iterations > 50:
        parser.error("at most 50 iterations")
    sigs = [getattr(signal, "SIG" + s.strip()) for s in args.signals.split(",")]

    receiver = None
    if args.endpoint == "receiver":
        sys.path.insert(0, str(ROOT))
        from tests.support.otlp_receiver import OtlpReceiver

        receiver = OtlpReceiver().__enter__()
        endpoint = receiver.endpoint
    else:
        endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    logdir = Path(tempfile.mkdtemp(prefix="linger-"))
    print(
        f"worker={args.worker} kit={not args.no_kit} when={args.when} endpoint={args.endpoint} "
        f"env={args.env} args={args.arg} logs={logdir}"
    )
    lingered = {s: 0 for s in sigs}
    runs = {s: 0 for s in sigs}
    try:
        for i in range(args.iterations):
            sig = sigs[i % len(sigs)]
            r = iteration(args, sig, endpoint, logdir, i)
            master_s = r["master_s"]
            slow = master_s is None or master_s > args.linger
            runs[sig] += 1
            lingered[sig] += slow
            shown = "did not exit" if master_s is None else f"{master_s:5.2f}s"
            print(
                f"[{i + 1:2d}/{args.iterations}] {r['sig']:7s} ok={r['ok']} master {shown} "
                f"workers {r['workers_s']} rc={r['rc']}{'  LINGER' if slow else ''}",
                flush=True,
            )
    finally:
        if receiver is not None:
            receiver.__exit__(None, None, None)
    total = sum(lingered.values())
    detail = ", ".join(f"{signal.Signals(s).name} {lingered[s]}/{runs[s]}" for s in sigs)
    print(f"lingered > {args.linger:g}s: {total}/{sum(runs.values())} ({detail})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
