"""RSS of the kit's server over many requests, with the collector up and/or down, interleaved.

    python benchmarks/memory.py                          # 1,000,000 requests per server, both collectors
    python benchmarks/memory.py --requests 200000 --collector down

``--collector up`` exports to the OTLP sink (``sink.py``); ``down`` points OTLP at
a closed port; ``both`` (the default) runs one server of each at once and sends
them alternate chunks of about ``--every`` requests (wrk runs for a time, so a
chunk is sized from the previous one's rate), so both see the same machine
noise. After each chunk VmRSS is read from /proc/<pid>/status. The summary says
whether memory stayed bounded and whether p99 with the collector down is within
10 % of collector-up (median over chunks). Results go to
benchmarks/results/memory.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness import (
    BENCH,
    Server,
    Sink,
    default_kit_python,
    exit_cleanly_on_sigterm,
    free_port,
    git_revision,
    machine_info,
    make_variants,
    memory_kb,
    started,
)
from load import LoadGenerator, find_wrk

P99_TOLERANCE = 0.10
FIRST_CHUNK_S = 5  # measures the rate the next chunks are sized from


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000, help="requests per server")
    parser.add_argument("--every", type=int, default=50_000, help="sample RSS about every this many requests")
    parser.add_argument("--collector", choices=("up", "down", "both"), default="both")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--path", default="/items/1")
    parser.add_argument("--kit-python", default=None, help="default: .venv/bin/python, else this interpreter")
    parser.add_argument("--load", choices=("auto", "python"), default="auto")
    parser.add_argument("--output-dir", type=Path, default=BENCH / "results")
    return parser.parse_args()


def main() -> int:
    exit_cleanly_on_sigterm()
    args = parse_args()
    kit_python = args.kit_python or default_kit_python()
    modes = ["up", "down"] if args.collector == "both" else [args.collector]
    kit = make_variants(kit_python, None)["kit"]
    wrk = None if args.load == "python" else find_wrk(install=True)
    load = LoadGenerator(wrk, kit_python, args.connections)
    samples: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    info: dict[str, dict[str, Any]] = {}
    print(
        f"{len(modes)} server(s), {args.requests} requests each, RSS every ~{args.every}; load: {load.tool}", flush=True
    )
    with ExitStack() as stack:
        servers: dict[str, Server] = {}
        sink = stack.enter_context(Sink(kit_python)) if "up" in modes else None
        for mode in modes:
            endpoint = sink.endpoint if mode == "up" and sink else f"http://127.0.0.1:{free_port()}"  # nobody listens
            port = free_port()
            server = Server(kit.command(port, access_log=False), kit.env(endpoint, free_port()), port)
            stack.enter_context(started(server, args.path))
            servers[mode] = server
            info[mode] = {"otlp_endpoint": endpoint, "rss_start_mb": memory_kb(server.pid)["VmRSS"] / 1024}
        header = " | ".join(f"{m:>4}: RSS MB  p99 ms   req/s" for m in modes)
        print(f"{'requests':>9}  {header}", flush=True)
        done = dict.fromkeys(modes, 0)
        while min(done.values()) < args.requests:
            cells = []
            for mode in modes:
                server = servers[mode]
                target = min(args.every, args.requests - done[mode])
                rate = samples[mode][-1]["rps"] if samples[mode] else 0
                # wrk runs for a time, not a count: size each chunk from the last chunk's rate.
                seconds = max(1, round(target / rate)) if rate else FIRST_CHUNK_S
                result = load.run(server.url + args.path, seconds)
                mem = memory_kb(server.pid)
                done[mode] += result.requests
                samples[mode].append(
                    {
                        "requests": done[mode],
                        "rss_mb": mem["VmRSS"] / 1024,
                        "hwm_mb": mem["VmHWM"] / 1024,
                        "p99_ms": result.p99_us / 1000,
                        "rps": result.rps,
                        "errors": result.errors + result.status_errors,
                    }
                )
                s = samples[mode][-1]
                cells.append(f"{mode:>4}: {s['rss_mb']:6.1f}  {s['p99_ms']:6.2f}  {s['rps']:6.0f}")
            print(f"{done[modes[0]]:>9}  {' | '.join(cells)}", flush=True)
        for mode, server in servers.items():
            began = time.monotonic()
            info[mode]["exit_code"] = server.stop()
            info[mode]["shutdown_s"] = round(time.monotonic() - began, 2)
            info[mode]["export_warnings"] = server.stderr().count("otel_asgi_kit: cannot export")
        if sink is not None:
            info["up"]["sink"] = sink.stats()

    report = render(args, modes, samples, info, load.tool)
    print("\n" + report)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "memory.md").write_text(report)
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "samples": samples, "servers": info}
    (args.output_dir / "memory.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


def render(
    args: argparse.Namespace,
    modes: list[str],
    samples: dict[str, list[dict[str, Any]]],
    info: dict[str, dict[str, Any]],
    tool: str,
) -> str:
    m = machine_info()
    lines = [
        "# otel_asgi_kit memory under load",
        "",
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- command: `{shlex.join(['python', sys.argv[0], *sys.argv[1:]])}`",
        f"- machine: {m['nproc']} CPUs ({m['cpu_model']}); kit revision {git_revision()}; load: {tool} "
        f"-t1 -c{args.connections} on {args.path}",
        "",
        "| requests (up to) | "
        + " | ".join(f"{mode}: RSS MB | {mode}: p99 ms | {mode}: req/s" for mode in modes)
        + " |",
        "|---:|" + "---:|---:|---:|" * len(modes),
    ]
    for i in range(min(len(samples[mode]) for mode in modes)):
        cells = []
        for mode in modes:
            s = samples[mode][i]
            cells.append(f"{s['rss_mb']:.1f} | {s['p99_ms']:.2f} | {s['rps']:.0f}")
        count = max(samples[mode][i]["requests"] for mode in modes)
        lines.append(f"| {count} | " + " | ".join(cells) + " |")
    lines.append("")
    for mode in modes:
        rows, d = samples[mode], info[mode]
        # Growth after the first chunk: the first one includes warm-up (imports, caches, queues filling).
        growth = rows[-1]["rss_mb"] - rows[0]["rss_mb"]
        lines.append(
            f"- collector {mode}: RSS {d['rss_start_mb']:.1f} MB idle, {rows[0]['rss_mb']:.1f} MB after the first "
            f"chunk, {rows[-1]['rss_mb']:.1f} MB at the end ({growth:+.1f} MB after the first chunk), peak "
            f"{max(r['hwm_mb'] for r in rows):.1f} MB; shutdown {d['shutdown_s']} s (exit {d['exit_code']}); "
            f"{d['export_warnings']} export warning line(s) on stderr; "
            f"{sum(r['errors'] for r in rows)} failed requests"
        )
        if "sink" in d:
            sent = rows[-1]["requests"]
            lines.append(f"- collector up: the sink received {d['sink']['spans']} spans for {sent} requests")
    if len(modes) == 2:
        up = statistics.median(r["p99_ms"] for r in samples["up"])
        down = statistics.median(r["p99_ms"] for r in samples["down"])
        verdict = "within" if down <= up * (1 + P99_TOLERANCE) else "NOT within"
        lines.append(
            f"- p99 (median over chunks): up {up:.2f} ms, down {down:.2f} ms, ratio {down / up:.2f}: "
            f"{verdict} {P99_TOLERANCE:.0%} of collector-up"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
