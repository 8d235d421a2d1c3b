"""Per-request overhead of the kit against the bare app and the stock distro, in one interleaved session.

    python benchmarks/run.py           # 3 rounds x 3 scenarios x (bare, stock, kit): about 9 minutes
    python benchmarks/run.py --smoke   # one short round of the plain scenario: does everything work?

See benchmarks/README.md for what each column means and how to read the noise.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
import traceback
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness import (
    BENCH,
    REPORTED_PACKAGES,
    STOCK_VENV,
    TAIL_RATIO,
    Server,
    Sink,
    StockUnavailableError,
    Variant,
    core_times,
    cpu_seconds,
    default_kit_python,
    ensure_stock_venv,
    exit_cleanly_on_sigterm,
    free_port,
    git_revision,
    kit_source,
    machine_info,
    make_variants,
    memory_kb,
    prometheus_count,
    python_facts,
    started,
    steal_percent,
    user_seconds,
)
from load import LoadGenerator, find_wrk


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    access_log: bool
    what: str


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("plain", "/items/1", access_log=False, what="GET /items/{id}, access log off"),
        Scenario("access-log", "/items/1", access_log=True, what="GET /items/{id}, uvicorn access log on"),
        Scenario("log-line", "/log/1", access_log=False, what="GET /log/{id}: the handler logs one INFO line"),
    )
}
VARIANT_ORDER = ("bare", "stock", "kit-base", "kit", "kit-tail")
EXPECTED_SPANS = {"kit": 1.0, "kit-base": 1.0, "stock": 3.0}
# kit-tail keeps TAIL_RATIO of the requests by trace id: a binomial share, so a band, not an exact count
TAIL_SPANS = (TAIL_RATIO * 0.8, TAIL_RATIO * 1.2)
SPAN_TOLERANCE = 0.02  # requests in flight when wrk stops are served (and traced) but not counted by wrk
READY_PATH = "/items/0"  # traced by every variant, so the probe counts as a request


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="1 round, plain scenario, 1 s runs, no warm-up (CI)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring (excluded)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--max-steal",
        type=float,
        default=20.0,
        help="measure a run again when the hypervisor took more than this %% of core 0 (shared machines)",
    )
    parser.add_argument("--retries", type=int, default=2, help="at most this many re-measurements per run")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated: " + ", ".join(SCENARIOS))
    parser.add_argument(
        "--variants", default="bare,stock,kit,kit-tail", help="comma-separated subset of " + ",".join(VARIANT_ORDER)
    )
    parser.add_argument(
        "--base-kit-python",
        default=None,
        help="python of a venv with the kit at another revision: adds the kit-base variant (before/after runs)",
    )
    parser.add_argument(
        "--kit-python",
        default=None,
        help="python of the venv with the kit installed (default: .venv/bin/python, else this interpreter)",
    )
    parser.add_argument("--stock-venv", type=Path, default=None, help="where the stock distro's venv is cached")
    parser.add_argument(
        "--framework",
        choices=("starlette", "aiohttp"),
        default="starlette",
        help="starlette under uvicorn (stock: contrib asgi+starlette), or aiohttp.web under run_app "
        "(stock: contrib aiohttp-server)",
    )
    parser.add_argument("--stock-build-timeout", type=float, default=None, help="seconds (default 300; smoke 120)")
    parser.add_argument("--load", choices=("auto", "wrk", "python"), default="auto", help="load generator")
    parser.add_argument("--no-install", action="store_true", help="do not apt-get install wrk when it is missing")
    parser.add_argument("--output-dir", type=Path, default=BENCH / "results")
    parser.add_argument("--name", default=None, help="result file stem (default: latest; smoke: smoke)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.duration, args.warmup, args.retries = 1, 1.0, 0.0, 0
        if args.scenarios == parser.get_default("scenarios"):
            args.scenarios = "plain"
    args.name = args.name or ("smoke" if args.smoke else "latest") + ("-aiohttp" if args.framework == "aiohttp" else "")
    if args.stock_venv is None:
        args.stock_venv = STOCK_VENV.with_name("stock-venv-aiohttp") if args.framework == "aiohttp" else STOCK_VENV
    args.stock_build_timeout = args.stock_build_timeout or (120.0 if args.smoke else 300.0)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    wanted = {v.strip() for v in args.variants.split(",")} | ({"kit-base"} if args.base_kit_python else set())
    args.variants = [v for v in VARIANT_ORDER if v in wanted]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown or not args.variants:
        parser.error(f"unknown scenarios {unknown} or no variants")
    return args


def run_one(variant: Variant, scenario: Scenario, args: argparse.Namespace, load: LoadGenerator) -> dict[str, Any]:
    port = free_port()
    admin_port = free_port() if variant.name.startswith("kit") else None
    record: dict[str, Any] = {"variant": variant.name, "scenario": scenario.name}
    with ExitStack() as stack:
        sink = stack.enter_context(Sink(args.kit_python)) if variant.exports else None
        server = Server(
            variant.command(port, access_log=scenario.access_log),
            variant.env(sink.endpoint if sink else None, admin_port),
            port,
        )
        url = server.url + scenario.path
        began = time.monotonic()
        with started(server, READY_PATH) as probes:
            record["startup_s"] = round(time.monotonic() - began, 2)
            warm = load.run(url, args.warmup) if args.warmup > 0 else None
            cpu_before, user_before, steal_before = cpu_seconds(server.pid), user_seconds(server.pid), core_times()
            measured = load.run(url, args.duration)
            cpu_after, user_after, steal_after = cpu_seconds(server.pid), user_seconds(server.pid), core_times()
            record["rss_mb"] = round(memory_kb(server.pid).get("VmRSS", 0) / 1024, 1)
            if admin_port is not None:
                time.sleep(1.5)  # one snapshot interval (1 s) so the scrape has every request
                record["prometheus_count"] = prometheus_count(admin_port)
            record["exit_code"] = server.stop()  # SIGINT: graceful, every variant flushes on the way out
        total = probes + (warm.requests if warm else 0) + measured.requests
        record.update(
            in_flight_max=args.connections * (2 if warm else 1),
            requests=measured.requests,
            requests_total=total,
            rps=measured.rps,
            p50_ms=measured.p50_us / 1000,
            p99_ms=measured.p99_us / 1000,
            cpu_us_per_req=(cpu_after - cpu_before) * 1e6 / measured.requests if measured.requests else None,
            user_us_per_req=(user_after - user_before) * 1e6 / measured.requests if measured.requests else None,
            cpu_s=round(cpu_after - cpu_before, 2),
            errors=measured.errors + measured.status_errors + (warm.errors + warm.status_errors if warm else 0),
            steal_pct=round(steal_percent(steal_before, steal_after), 1),
        )
        if sink is not None:
            stats = sink.stats()
            record["sink"] = stats
            for key, out in (("spans", "spans_per_req"), ("log_records", "logs_per_req")):
                value = stats[key] if stats["decodes"] else None
                record[out] = value / total if value is not None and total else None
    return record


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summarize(runs: list[dict[str, Any]], scenarios: Sequence[str], variants: Sequence[str]) -> list[dict[str, Any]]:
    ok = [r for r in runs if "error" not in r]
    rows = []
    for scenario in scenarios:
        by_round = {v: {r["round"]: r for r in ok if r["scenario"] == scenario and r["variant"] == v} for v in variants}
        bare = by_round.get("bare", {})
        bare_cpu = median([r["cpu_us_per_req"] for r in bare.values()])
        bare_rps = median([r["rps"] for r in bare.values()])
        for variant in variants:
            mine = by_round[variant]
            if not mine:
                continue
            cpu = median([r["cpu_us_per_req"] for r in mine.values()])
            rps = median([r["rps"] for r in mine.values()])
            paired = [
                r["cpu_us_per_req"] - bare[n]["cpu_us_per_req"]
                for n, r in mine.items()
                if n in bare and r["cpu_us_per_req"] is not None and bare[n]["cpu_us_per_req"] is not None
            ]
            paired_user = [
                r["user_us_per_req"] - bare[n]["user_us_per_req"]
                for n, r in mine.items()
                if n in bare and r.get("user_us_per_req") is not None and bare[n].get("user_us_per_req") is not None
            ]
            rows.append(
                {
                    "scenario": scenario,
                    "variant": variant,
                    "rounds": len(mine),
                    "rps": rps,
                    "p50_ms": median([r["p50_ms"] for r in mine.values()]),
                    "p99_ms": median([r["p99_ms"] for r in mine.values()]),
                    "cpu_us_per_req": cpu,
                    "cpu_us_per_req_by_round": [round(mine[n]["cpu_us_per_req"] or 0, 1) for n in sorted(mine)],
                    "overhead_us_per_req": None if variant == "bare" else median(paired),
                    "user_us_per_req": median([r.get("user_us_per_req") for r in mine.values()]),
                    "user_overhead_us_per_req": None if variant == "bare" else median(paired_user),
                    "rps_vs_bare": ratio(rps, bare_rps),
                    "cpu_vs_bare": ratio(cpu, bare_cpu),
                    "spans_per_req": median([r.get("spans_per_req") for r in mine.values()]),
                    "logs_per_req": median([r.get("logs_per_req") for r in mine.values()]),
                    "spans_total": sum((r.get("sink") or {}).get("spans") or 0 for r in mine.values()),
                    "errors": sum(r["errors"] for r in mine.values()),
                }
            )
    return rows


def kit_vs_stock(rows: list[dict[str, Any]], against: str = "stock") -> list[dict[str, Any]]:
    """Ratios of the kit to ``against`` (the stock distro, or ``kit-base``: the kit at another revision)."""
    found = []
    for scenario in dict.fromkeys(r["scenario"] for r in rows):
        by = {r["variant"]: r for r in rows if r["scenario"] == scenario}
        if "kit" in by and against in by:
            kit, stock = by["kit"], by[against]
            found.append(
                {
                    "scenario": scenario,
                    "cpu": ratio(kit["cpu_us_per_req"], stock["cpu_us_per_req"]),
                    "overhead": ratio(kit["overhead_us_per_req"], stock["overhead_us_per_req"]),
                    "rps": ratio(kit["rps"], stock["rps"]),
                    "p99": ratio(kit["p99_ms"], stock["p99_ms"]),
                }
            )
    return found


def checks(runs: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(problems, notes): problems make the numbers untrustworthy; notes are findings worth reading."""
    problems, notes = [], []
    for r in runs:
        where = f"round {r['round']} {r['scenario']} {r['variant']}"
        if "error" in r:
            problems.append(f"{where}: failed: {r['error'].strip().splitlines()[-1]}")
            continue
        if r["errors"]:
            problems.append(f"{where}: {r['errors']} failed requests")
        # Requests in flight when wrk stops are served (and traced) but not counted by wrk.
        low, high = r["requests_total"], r["requests_total"] + r["in_flight_max"]
        sink = r.get("sink") or {}
        if r["variant"] in EXPECTED_SPANS and sink.get("decodes"):
            per = EXPECTED_SPANS[r["variant"]]
            if not low * per <= sink["spans"] <= high * per:
                message = f"{where}: {sink['spans']} spans for {low}..{high} requests, expected {per:g} per request"
                (problems if r["variant"].startswith("kit") else notes).append(message)
        if r["variant"] == "kit-tail" and sink.get("decodes") and low:
            share = sink["spans"] / low
            if not TAIL_SPANS[0] <= share <= TAIL_SPANS[1]:
                problems.append(f"{where}: {share:.3f} spans per request exported, expected about {TAIL_RATIO:g}")
        if r["variant"].startswith("kit"):
            if not sink.get("spans") and not sink.get("requests", {}).get("traces"):
                problems.append(f"{where}: the sink received no span from the kit")
            count = r.get("prometheus_count")
            if count is None or not low <= count <= high:
                problems.append(f"{where}: Prometheus request count {count} for {low}..{high} requests")
            logs = r.get("logs_per_req")
            if r["scenario"] == "plain" and logs is not None and logs > 0.5:
                notes.append(
                    f"{where}: {logs:.2f} log records per request exported with uvicorn's --no-access-log "
                    "(the access log is on anyway)"
                )
    return problems, notes


def goals(rows: list[dict[str, Any]]) -> list[str]:
    """The overhead goals (issue "Overhead you can leave on, part 2"), met or not, from this run's medians."""
    by = {(r["scenario"], r["variant"]): r for r in rows}

    def line(what: str, value: float | None, target: str, met: bool | None, spec: str) -> str:
        verdict = "—" if met is None else ("met" if met else "NOT met")
        return f"| {what} | {fmt(value, spec)} | {target} | {verdict} |"

    found = []
    log_kit, log_stock = by.get(("log-line", "kit")), by.get(("log-line", "stock"))
    if log_kit:
        value = log_kit["rps_vs_bare"]
        found.append(line("log-line: kit req/s ÷ bare", value, "≥ 0.5", None if value is None else value >= 0.5, ".2f"))
        if log_stock:
            value = ratio(log_kit["rps"], log_stock["rps"])
            found.append(
                line("log-line: kit req/s ÷ stock", value, "≥ 5", None if value is None else value >= 5, ".2f")
            )
    for variant, limit in (("kit", 40), ("kit-tail", 25)):
        row = by.get(("plain", variant))
        if row:
            value = row["overhead_us_per_req"]
            met = None if value is None else value <= limit
            found.append(line(f"plain: {variant} overhead µs/req", value, f"≤ {limit}", met, "+.0f"))
    if not found:
        return []
    return ["", "Goals (medians of this run):", "", "| goal | value | target | |", "|---|---:|---|---|", *found]


def fmt(value: float | None, spec: str = ".0f", suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def _user(row: dict[str, Any]) -> str:
    overhead = row["user_overhead_us_per_req"]
    return fmt(row["user_us_per_req"]) + ("" if overhead is None else f" ({overhead:+.0f})")


def render(
    meta: dict[str, Any],
    rows: list[dict[str, Any]],
    versus: list[dict[str, Any]],
    problems: list[str],
    notes: list[str],
    versus_base: list[dict[str, Any]] | None = None,
) -> str:
    m = meta["machine"]
    lines = [
        "# otel_asgi_kit overhead benchmark",
        "",
        f"- date: {meta['date']}",
        f"- command: `{meta['command']}`",
        f"- framework: {meta.get('framework', 'starlette')} (aiohttp: web.run_app; stock = contrib aiohttp-server)",
        f"- machine: {m['nproc']} CPUs ({m['cpu_model']}), Linux {m['kernel']}, "
        f"load average before {' '.join(m['loadavg'])}",
        f"- server pinned to core 0, load generator and OTLP sink to core 1: {'yes' if m['pinned'] else 'NO'}",
        f"- load: {meta['load_tool']} -t1 -c{meta['connections']}, {meta['duration']:g} s measured after "
        f"{meta['warmup']:g} s warm-up, {meta['rounds']} interleaved round(s); medians over rounds",
        f"- kit revision: {meta['kit_revision']}",
        *(f"- {name} imports {path}" for name, path in meta.get("kit_sources", {}).items()),
    ]
    for name, facts in meta["interpreters"].items():
        pkgs = ", ".join(f"{k} {v}" for k, v in facts["packages"].items() if v)
        lines.append(f"- {name}: Python {facts['python']}; {pkgs}")
    steal = [r["steal_pct"] for r in meta["runs"] if "steal_pct" in r]
    if steal:
        lines.append(f"- CPU steal on core 0 during measurement: median {median(steal):.1f} %, max {max(steal):.1f} %")
        again = sum(1 for r in meta["runs"] if r.get("attempts", 1) > 1)
        high = sum(1 for s in steal if s > meta["max_steal"])
        lines.append(
            f"- runs measured again because steal exceeded {meta['max_steal']:g} %: {again}; "
            f"kept with steal still above it (retries used up): {high}"
        )
    for variant, reason in meta["skipped"].items():
        lines.append(f"- **{variant} SKIPPED**: {reason}")
    lines += [
        "",
        "| scenario | variant | req/s | p50 ms | p99 ms | CPU µs/req | by round | overhead µs/req "
        "| user µs/req (overhead) | req/s ÷ bare | CPU ÷ bare | spans/req | logs/req | errors |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {r['variant']} | {fmt(r['rps'])} | {fmt(r['p50_ms'], '.2f')} "
            f"| {fmt(r['p99_ms'], '.2f')} | {fmt(r['cpu_us_per_req'])} "
            f"| {' / '.join(f'{v:.0f}' for v in r['cpu_us_per_req_by_round'])} "
            f"| {fmt(r['overhead_us_per_req'], '+.0f')} "
            f"| {_user(r)} "
            f"| {fmt(r['rps_vs_bare'], '.2f')} "
            f"| {fmt(r['cpu_vs_bare'], '.2f')} | {fmt(r['spans_per_req'], '.2f')} "
            f"| {fmt(r['logs_per_req'], '.2f')} | {r['errors']} |"
        )
    for title, pairs in (
        ("Kit ÷ stock (below 1: the kit is cheaper / faster):", versus),
        ("Kit ÷ kit-base, the kit at the base revision (below 1: this revision is cheaper / faster):", versus_base),
    ):
        if not pairs:
            continue
        lines += [
            "",
            title,
            "",
            "| scenario | CPU µs/req | overhead µs/req | req/s | p99 |",
            "|---|---:|---:|---:|---:|",
        ]
        for v in pairs:
            lines.append(
                f"| {v['scenario']} | {fmt(v['cpu'], '.2f')} | {fmt(v['overhead'], '.2f')} "
                f"| {fmt(v['rps'], '.2f')} | {fmt(v['p99'], '.2f')} |"
            )
    lines += goals(rows)
    verdict = (
        "every run verified (kit: 1 span per request at the sink, Prometheus count = requests; no failed requests)"
        if not problems
        else f"{len(problems)} PROBLEM(S)"
    )
    lines += ["", f"Checks: {verdict}", *(f"- {p}" for p in problems)]
    if notes:
        lines += ["", "Notes:", *(f"- {n}" for n in notes)]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    exit_cleanly_on_sigterm()
    args = parse_args(argv)
    args.kit_python = args.kit_python or default_kit_python()
    command = shlex.join(["python", str(Path(sys.argv[0])), *(sys.argv[1:] if argv is None else argv)])
    skipped: dict[str, str] = {}
    stock_venv = None
    if "stock" in args.variants:
        print(f"stock distro venv: {args.stock_venv} (built once if missing) ...", flush=True)
        try:
            stock_venv = ensure_stock_venv(
                args.kit_python, args.stock_venv, timeout=args.stock_build_timeout, framework=args.framework
            )
        except StockUnavailableError as exc:
            if not args.smoke:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            skipped["stock"] = str(exc)
            args.variants.remove("stock")
            print(f"\n*** STOCK SKIPPED: {exc}\n*** this smoke run compares bare and kit only\n", flush=True)
    variants = make_variants(args.kit_python, stock_venv, args.base_kit_python, args.framework)
    if args.framework == "aiohttp":
        EXPECTED_SPANS["stock"] = 1.0  # the contrib aiohttp-server makes only the server span
    wrk = None if args.load == "python" else find_wrk(install=not args.no_install)
    if args.load == "wrk" and wrk is None:
        print("error: wrk not found and could not be installed", file=sys.stderr)
        return 2
    load = LoadGenerator(wrk, args.kit_python, args.connections)
    if wrk is None:
        print("note: wrk not available, using the Python load generator (req/s understates the server)", flush=True)

    sources = {name: kit_source(v.bin_dir) for name, v in variants.items() if v.launcher and name != "stock"}
    if "kit-base" in sources and sources["kit-base"] == sources["kit"]:
        print(f"error: kit-base imports the same otel_asgi_kit as kit ({sources['kit']})", file=sys.stderr)
        return 2
    interpreters = {"kit venv": python_facts(args.kit_python, REPORTED_PACKAGES)}
    if stock_venv is not None:
        interpreters["stock venv"] = python_facts(str(stock_venv / "bin" / "python"), REPORTED_PACKAGES)
    plan = [(n, s, v) for n in range(1, args.rounds + 1) for s in args.scenarios for v in args.variants]
    per_run = args.warmup + args.duration + 4
    print(f"{len(plan)} runs, about {len(plan) * per_run / 60:.1f} minutes; load: {load.tool}", flush=True)
    meta: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "framework": args.framework,
        "machine": machine_info(),
        "interpreters": interpreters,
        "kit_revision": git_revision(),
        "kit_sources": sources,
        "load_tool": load.tool,
        "connections": args.connections,
        "duration": args.duration,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "max_steal": args.max_steal,
        "skipped": skipped,
        "runs": [],
    }
    runs: list[dict[str, Any]] = meta["runs"]
    for i, (round_no, scenario, variant) in enumerate(plan, 1):
        label = f"[{i:2d}/{len(plan)}] round {round_no} {scenario:10s} {variant:5s}"
        attempts = 0
        while True:
            attempts += 1
            try:
                record = run_one(variants[variant], SCENARIOS[scenario], args, load)
            except Exception:
                record = {"variant": variant, "scenario": scenario, "error": traceback.format_exc()}
                print(f"{label}: FAILED\n{record['error']}", flush=True)
                break
            if record["steal_pct"] <= args.max_steal or attempts > args.retries:
                break
            print(f"{label}: CPU steal {record['steal_pct']:.0f} % > {args.max_steal:g} %, measuring again", flush=True)
        record["round"] = round_no
        record["attempts"] = attempts
        runs.append(record)
        if "error" not in record:
            spans = record.get("spans_per_req")
            print(
                f"{label}: {record['rps']:7.0f} req/s  CPU {fmt(record['cpu_us_per_req'], '5.0f')} µs/req  "
                f"p99 {record['p99_ms']:6.2f} ms  spans/req {fmt(spans, '.2f')}  steal {record['steal_pct']:.0f} %",
                flush=True,
            )
    meta["machine"]["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    rows = summarize(runs, args.scenarios, args.variants)
    versus = kit_vs_stock(rows)
    versus_base = kit_vs_stock(rows, against="kit-base")
    problems, notes = checks(runs)
    report = render(meta, rows, versus, problems, notes, versus_base)
    print("\n" + report)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / f"{args.name}.md").write_text(report)
    result = {**meta, "summary": rows, "kit_vs_stock": versus, "kit_vs_base": versus_base, "problems": problems}
    result["notes"] = notes
    (args.output_dir / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"written: {args.output_dir / (args.name + '.md')} and .json")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
