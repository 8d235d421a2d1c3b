"""The overhead benchmark runs end to end (``benchmarks/run.py --smoke``); no timing is asserted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(400)
def test_smoke_run_compares_the_variants_and_the_kit_exports(tmp_path: Path) -> None:
    """One short round: bare, stock, kit and kit-tail rows in the table, the sink received the kit's spans,
    and the tail-sampled kit exported about a tenth of them (run.py checks the band and fails otherwise)."""
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--smoke",
            "--kit-python",
            sys.executable,
            "--output-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=380,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output

    result = json.loads((tmp_path / "smoke.json").read_text())
    table = (tmp_path / "smoke.md").read_text()
    expected = {"bare", "stock", "kit", "kit-tail"}
    if "stock" in result["skipped"]:
        # The stock distro's venv could not be built here (no index, too slow): say so, loudly.
        assert "STOCK SKIPPED" in output
        warnings.warn(f"benchmark smoke ran without the stock distro: {result['skipped']['stock']}", stacklevel=1)
        expected = {"bare", "kit", "kit-tail"}
    assert {row["variant"] for row in result["summary"]} == expected
    for variant in expected:
        assert f"| plain | {variant} |" in table

    kit_runs = [r for r in result["runs"] if r["variant"] == "kit"]
    assert kit_runs and all("error" not in r for r in kit_runs), output
    for run in kit_runs:
        assert run["sink"]["decodes"], "the sink could not import opentelemetry-proto"
        assert run["sink"]["spans"] > 0, output
    tail_runs = [r for r in result["runs"] if r["variant"] == "kit-tail"]
    assert tail_runs and all("error" not in r for r in tail_runs), output
    for run in tail_runs:
        share = run["sink"]["spans"] / run["requests_total"]
        assert 0.05 < share < 0.2, (share, output)
    assert "| plain: kit-tail overhead µs/req |" in table


def test_servers_import_their_own_venvs_kit(tmp_path: Path) -> None:
    """``opentelemetry-instrument`` puts its working directory first on PYTHONPATH: a directory holding an
    ``otel_asgi_kit`` shadows the venv's own (so a kit-base venv measured the working tree). The benchmark's
    servers run from ``SERVER_CWD``, where the venv's kit is the one imported."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from harness import SERVER_CWD, kit_source
    finally:
        sys.path.pop(0)
    fake = tmp_path / "otel_asgi_kit"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    bin_dir = Path(sys.executable).parent
    assert kit_source(bin_dir, cwd=tmp_path) == str(fake / "__init__.py")  # the hazard, shown
    import otel_asgi_kit

    assert not (SERVER_CWD / "otel_asgi_kit").exists()
    assert kit_source(bin_dir) == otel_asgi_kit.__file__


@pytest.mark.timeout(300)
def test_in_process_ab_runs_and_refuses_a_base_that_is_the_kit_itself() -> None:
    """``inprocess.py``: one short round gives bare and kit figures; a kit-base whose ``otel_asgi_kit`` is the
    kit's own file (this checkout) is refused, so an A/B can never compare a revision with itself."""
    script = str(ROOT / "benchmarks" / "inprocess.py")
    done = subprocess.run(
        [sys.executable, script, "--rounds", "1", "--requests", "500", "--tail"],
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "overhead +" in done.stdout and "bare" in done.stdout and "kit-tail" in done.stdout
    same = subprocess.run(
        [sys.executable, script, "--rounds", "1", "--requests", "500", "--base-src", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert same.returncode == 2, same.stdout + same.stderr
    assert "kit-base imported the kit's own" in same.stderr


@pytest.mark.timeout(300)
def test_in_process_aiohttp_runs_through_aiohttps_request_handler() -> None:
    """``inprocess.py --framework aiohttp``: one short round gives bare and kit figures, and the kit run has
    checked that the kit's hooks counted its requests (a kit run that traced nothing fails)."""
    script = str(ROOT / "benchmarks" / "inprocess.py")
    done = subprocess.run(
        [sys.executable, script, "--framework", "aiohttp", "--rounds", "1", "--requests", "500"],
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "aiohttp /items/1" in done.stdout and "overhead +" in done.stdout, done.stdout


@pytest.mark.timeout(300)
def test_instruction_counts_come_from_a_server_under_callgrind() -> None:
    """``instructions.py``: an aiohttp server under callgrind, bare, kit and kit-tail, each counted over its own
    requests only (instrumentation switched on after the warm-up): the kit's main thread runs more instructions."""
    script = str(ROOT / "benchmarks" / "instructions.py")
    command = [sys.executable, script, "--frameworks", "aiohttp", "--requests", "50", "--warm-up", "50"]
    command += ["--rounds", "1", "--variants", "kit,kit-tail"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=280, cwd=ROOT / "benchmarks")
    assert done.returncode == 0, done.stdout + done.stderr
    counts = {}
    for line in done.stdout.splitlines():
        if line.startswith("round 1 aiohttp"):
            name, main_thread = line.split()[3], line.split("main thread")[1].split()[0]
            counts[name] = int(main_thread.replace(",", ""))
    assert set(counts) == {"bare", "kit", "kit-tail"}, done.stdout
    assert 50_000 < counts["bare"] < min(counts["kit"], counts["kit-tail"]), counts
    assert max(counts["kit"], counts["kit-tail"]) < 10 * counts["bare"], counts
    assert "overhead +" in done.stdout, done.stdout


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2] != "Z"


@pytest.mark.timeout(120)
def test_sigterm_stops_what_the_benchmark_started() -> None:
    """A benchmark ended with SIGTERM stops its OTLP sink and its measured child on the way out."""
    script = str(ROOT / "benchmarks" / "inprocess.py")
    bench = subprocess.Popen(
        [sys.executable, script, "--rounds", "50", "--requests", "200000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        children: set[int] = set()
        while len(children) < 2 and time.monotonic() < deadline:  # the sink, then the first measured run
            children |= _children(bench.pid)
            time.sleep(0.1)
        assert len(children) >= 2, children
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=30) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 10
        while any(_running(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in children if _running(pid)], "left running after SIGTERM"
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
            bench.wait()


@pytest.mark.parametrize("tail", [False, True])
def test_span_end_micro_benchmark_runs(tail: bool) -> None:
    """``span_end.py``: one short round times ``span.end()`` and the compiled span end."""
    command = [sys.executable, str(ROOT / "benchmarks" / "span_end.py"), "--spans", "200", "--rounds", "1"]
    done = subprocess.run([*command, *(["--tail"] if tail else [])], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "compiled ÷ span.end():" in done.stdout
