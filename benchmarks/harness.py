"""Shared pieces of the benchmarks: the variants, server and sink processes, /proc readings, the load generator."""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import platform
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# Where servers run. Not the repository root: ``opentelemetry-instrument`` puts its working directory
# first on PYTHONPATH, so from the root every venv — the kit-base one too — imported the working
# tree's ``otel_asgi_kit`` instead of its own installed revision (``kit_source`` checks it).
SERVER_CWD = BENCH
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CORE = 0  # the server and all its threads (export threads included)
CLIENT_CORE = 1  # wrk and the OTLP sink
TAIL_RATIO = 0.1  # the kit-tail variant keeps this share of the requests that neither failed nor were slow
# Tail sampling: errors, 5xx and requests over 1 s always, TAIL_RATIO of the rest (by trace id).
TAIL_ENV = {"OTEL_ASGI_KIT_TAIL_SAMPLING_RATIO": str(TAIL_RATIO), "OTEL_ASGI_KIT_TAIL_SAMPLING_SLOW_MS": "1000"}

STOCK_VENV = Path.home() / ".cache" / "otel-asgi-kit" / "bench" / "stock-venv"
# 0.66b1 is the newest contrib release that has opentelemetry-instrumentation-starlette;
# pip resolves the SDK/exporter 1.45.x it pins. Server packages are pinned to the kit venv's versions.
STOCK_CONTRIB = "0.66b1"
STOCK_PACKAGES = (
    f"opentelemetry-distro=={STOCK_CONTRIB}",
    "opentelemetry-exporter-otlp",
    f"opentelemetry-instrumentation-asgi=={STOCK_CONTRIB}",
    f"opentelemetry-instrumentation-starlette=={STOCK_CONTRIB}",
    f"opentelemetry-instrumentation-logging=={STOCK_CONTRIB}",
)
SERVER_PACKAGES = ("uvicorn", "starlette", "uvloop", "httptools")
# --framework aiohttp: web.run_app, and the contrib aiohttp-server instrumentation as "stock"
# (0.66b1 is its newest release; it makes one server span per request).
STOCK_PACKAGES_AIOHTTP = (
    f"opentelemetry-distro=={STOCK_CONTRIB}",
    "opentelemetry-exporter-otlp",
    f"opentelemetry-instrumentation-aiohttp-server=={STOCK_CONTRIB}",
    f"opentelemetry-instrumentation-logging=={STOCK_CONTRIB}",
)
SERVER_PACKAGES_AIOHTTP = ("aiohttp",)
REPORTED_PACKAGES = (
    *SERVER_PACKAGES,
    "aiohttp",
    "otel-asgi-kit",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation",
    "opentelemetry-instrumentation-starlette",
    "opentelemetry-instrumentation-aiohttp-server",
    "opentelemetry-exporter-otlp-proto-http",
    "protobuf",
)


def default_kit_python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def can_pin() -> bool:
    return shutil.which("taskset") is not None and {SERVER_CORE, CLIENT_CORE} <= os.sched_getaffinity(0)


def pinned(core: int, cmd: Sequence[str]) -> list[str]:
    """``taskset`` execs the command, so the PID we get is the command's own."""
    return ["taskset", "-c", str(core), *cmd] if can_pin() else list(cmd)


def base_env() -> dict[str, str]:
    """The caller's environment without any OTel setting and with Python's default (block) stdout buffering."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.pop("PYTHONUNBUFFERED", None)
    return env


# --- /proc readings -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all its threads), in seconds."""
    data = Path(f"/proc/{pid}/stat").read_text()
    fields = data[data.rindex(")") + 2 :].split()  # fields[0] is field 3 (state)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def user_seconds(pid: int) -> float:
    """utime alone: what the process computed, without the system time that CPU steal inflates."""
    data = Path(f"/proc/{pid}/stat").read_text()
    return int(data[data.rindex(")") + 2 :].split()[11]) / CLK_TCK


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in kB."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def core_times(core: int = SERVER_CORE) -> tuple[int, int]:
    """(steal, total) jiffies of one core: steal is time the hypervisor gave to someone else."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            values = [int(v) for v in line.split()[1:]]
            return values[7], sum(values[:8])
    return 0, 0


def steal_percent(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[1] - before[1]
    return 100.0 * (after[0] - before[0]) / total if total > 0 else 0.0


# --- what ran where -------------------------------------------------------------------------------


def python_facts(python: str, packages: Sequence[str]) -> dict[str, Any]:
    """Python version and installed versions (None when missing) as seen by another interpreter."""
    code = (
        "import importlib.metadata as m, json, platform, sys\n"
        "def v(n):\n"
        "    try:\n"
        "        return m.version(n)\n"
        "    except m.PackageNotFoundError:\n"
        "        return None\n"
        "print(json.dumps({'python': platform.python_version(), 'packages': {n: v(n) for n in sys.argv[1:]}}))\n"
    )
    out = subprocess.run([python, "-c", code, *packages], capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def git_revision() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "otel_asgi_kit"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}{' + uncommitted changes in otel_asgi_kit/' if dirty else ''}" if head else "unknown"


def machine_info() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "pinned": can_pin(),
    }


# --- the stock distro's own virtualenv ------------------------------------------------------------


class StockUnavailableError(RuntimeError):
    pass


def ensure_stock_venv(
    kit_python: str, path: Path = STOCK_VENV, *, build: bool = True, timeout: float = 300, framework: str = "starlette"
) -> Path:
    """The stock distro's venv, built once (same Python and server package versions as the kit) and cached."""
    aiohttp = framework == "aiohttp"
    facts = python_facts(kit_python, SERVER_PACKAGES_AIOHTTP if aiohttp else SERVER_PACKAGES)
    missing = [n for n, v in facts["packages"].items() if v is None]
    if missing:
        raise StockUnavailableError(
            f"{kit_python} lacks {', '.join(missing)}: cannot pin the stock venv to its versions"
        )
    wanted = {
        "python": facts["python"],
        "packages": [
            *(STOCK_PACKAGES_AIOHTTP if aiohttp else STOCK_PACKAGES),
            *(f"{n}=={v}" for n, v in facts["packages"].items()),
        ],
    }
    marker = path / "bench-spec.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / "stock-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (path / "bin" / "opentelemetry-instrument").exists() and marker.exists():
            with contextlib.suppress(ValueError):
                if json.loads(marker.read_text()) == wanted:
                    return path
        if not build:
            raise StockUnavailableError(f"no stock venv matching {wanted['packages']} at {path}")
        shutil.rmtree(path, ignore_errors=True)
        deadline = time.monotonic() + timeout
        steps = [
            [kit_python, "-m", "venv", str(path)],
            [str(path / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            + wanted["packages"],
        ]
        for step in steps:
            try:
                subprocess.run(
                    step, capture_output=True, text=True, check=True, timeout=max(1.0, deadline - time.monotonic())
                )
            except subprocess.TimeoutExpired:
                shutil.rmtree(path, ignore_errors=True)
                raise StockUnavailableError(f"building the stock venv took more than {timeout:g}s") from None
            except subprocess.CalledProcessError as exc:
                shutil.rmtree(path, ignore_errors=True)
                tail = "\n".join((exc.stderr or "").strip().splitlines()[-5:])
                raise StockUnavailableError(
                    f"building the stock venv failed: {' '.join(step[:4])} ...\n{tail}"
                ) from None
        marker.write_text(json.dumps(wanted, indent=1))  # last: a half-built venv is never reused
    return path


# --- variants ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    name: str
    bin_dir: Path
    launcher: bool  # started under opentelemetry-instrument
    exports: bool  # needs the OTLP sink
    framework: str = "starlette"  # or "aiohttp": aiohttp_app.py under web.run_app

    def command(self, port: int, *, access_log: bool, app: str = "app:app") -> list[str]:
        if self.framework == "aiohttp":
            script = [str(self.bin_dir / "python"), str(BENCH / "aiohttp_app.py"), str(port)]
            script += ["--access-log"] if access_log else []
            return [str(self.bin_dir / "opentelemetry-instrument"), *script] if self.launcher else script
        cmd = [
            str(self.bin_dir / "uvicorn"),
            "--app-dir",
            str(BENCH),
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
        ]
        if not access_log:
            cmd.append("--no-access-log")
        return [str(self.bin_dir / "opentelemetry-instrument"), *cmd] if self.launcher else cmd

    def env(self, otlp_endpoint: str | None, admin_port: int | None) -> dict[str, str]:
        env = base_env()
        if self.name == "stock":
            env.update(
                OTEL_SERVICE_NAME="bench-stock",
                OTEL_TRACES_EXPORTER="otlp",
                OTEL_METRICS_EXPORTER="otlp",
                OTEL_LOGS_EXPORTER="otlp",
                OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
                OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED="true",
            )
        elif self.name.startswith("kit"):
            env.update(
                OTEL_SERVICE_NAME="bench-kit",
                OTEL_TRACES_SAMPLER="parentbased_always_on",
                OTEL_TRACES_EXPORTER="otlp",
                OTEL_LOGS_EXPORTER="otlp",
                OTEL_METRICS_EXPORTER="prometheus",
                OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
                OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1",
                OTEL_EXPORTER_PROMETHEUS_PORT=str(admin_port or free_port()),
            )
        if self.name == "kit-tail":
            env.update(TAIL_ENV)
        if self.launcher and otlp_endpoint is not None:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp_endpoint
        return env


def kit_source(bin_dir: Path, cwd: Path = SERVER_CWD) -> str:
    """The ``otel_asgi_kit`` file a server of this venv imports under ``opentelemetry-instrument`` from ``cwd``."""
    probe = "import otel_asgi_kit; print(otel_asgi_kit.__file__)"
    env = {**base_env(), "OTEL_SDK_DISABLED": "true"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [str(bin_dir / "opentelemetry-instrument"), str(bin_dir / "python"), "-c", probe],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def make_variants(
    kit_python: str, stock_venv: Path | None, base_kit_python: str | None = None, framework: str = "starlette"
) -> dict[str, Variant]:
    kit_bin = Path(kit_python).parent  # not resolved: a venv's python is a symlink out of the venv
    variants = {
        "bare": Variant("bare", kit_bin, launcher=False, exports=False, framework=framework),
        "kit": Variant("kit", kit_bin, launcher=True, exports=True, framework=framework),
        "kit-tail": Variant("kit-tail", kit_bin, launcher=True, exports=True, framework=framework),
    }
    if base_kit_python is not None:
        variants["kit-base"] = Variant(
            "kit-base", Path(base_kit_python).parent, launcher=True, exports=True, framework=framework
        )
    if stock_venv is not None:
        variants["stock"] = Variant("stock", stock_venv / "bin", launcher=True, exports=True, framework=framework)
    return variants


# --- processes -------------------------------------------------------------------------------------


def exit_cleanly_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C: the ``with`` blocks and ``finally`` clauses on the way out stop every server,
    sink and child this run started (Python's default ends at once and leaves them running)."""

    def leave(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)


def stop_process(process: subprocess.Popen[Any], sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
    """Signal the process we started (by PID); kill its own process group if it lingers."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    return process.wait(timeout)


class Server:
    """One uvicorn process pinned to the server core; stdout (the app's log lines) goes to /dev/null."""

    def __init__(self, cmd: Sequence[str], env: dict[str, str], port: int) -> None:
        self.cmd = list(cmd)
        self.env = env
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._stderr = tempfile.NamedTemporaryFile(prefix="bench-server-", suffix=".log", delete=False)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        self.process = subprocess.Popen(
            pinned(SERVER_CORE, self.cmd),
            cwd=SERVER_CWD,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            start_new_session=True,
        )

    def stderr(self) -> str:
        return Path(self._stderr.name).read_text(errors="replace")

    def wait_ready(self, path: str, timeout: float = 60.0) -> int:
        """Poll until one GET succeeds; returns how many requests reached the app (for spans per request)."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early ({self.process.returncode}):\n{self.stderr()[-3000:]}")
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    return 1
                raise RuntimeError(f"GET {path} answered {response.status}:\n{self.stderr()[-3000:]}")
            except (ConnectionError, http.client.HTTPException):
                time.sleep(0.05)
            finally:
                conn.close()
        raise RuntimeError(f"server not ready within {timeout:g}s:\n{self.stderr()[-3000:]}")

    def stop(self) -> int | None:
        if self.process is None:
            return None
        return stop_process(self.process)

    def cleanup(self) -> None:
        self.stop()
        self._stderr.close()
        Path(self._stderr.name).unlink(missing_ok=True)


class Sink:
    """``sink.py`` in its own process, pinned to the client core."""

    def __init__(self, python: str) -> None:
        self.python = python
        self.process: subprocess.Popen[str] | None = None
        self.endpoint = ""

    def __enter__(self) -> Sink:
        self.process = subprocess.Popen(
            pinned(CLIENT_CORE, [self.python, str(BENCH / "sink.py")]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 30)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            stop_process(self.process, signal.SIGTERM)
            raise RuntimeError("the OTLP sink did not start")
        self.endpoint = f"http://127.0.0.1:{json.loads(line)['port']}"
        return self

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.endpoint + "/stats", timeout=10) as response:
            return json.loads(response.read())

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            stop_process(self.process, signal.SIGTERM, timeout=5)


def prometheus_count(admin_port: int, metric: str = "http_server_request_duration_seconds_count") -> float | None:
    """Sum of one counter over all its series, scraped from the kit's admin port."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return None
    total = 0.0
    for line in text.splitlines():
        if line.startswith(metric + "{") or line.startswith(metric + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


@contextlib.contextmanager
def started(server: Server, ready_path: str) -> Iterator[int]:
    """Start, wait until ready (yields the requests that took), and always stop."""
    try:
        server.start()
        yield server.wait_ready(ready_path)
    finally:
        server.cleanup()
