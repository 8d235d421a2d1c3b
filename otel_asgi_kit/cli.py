"""``otel-asgi-kit doctor [APP]``: what the kit would do here, and what stands in its way.

It prints every variable with its value and where the value came from
(secrets as ``***``), then checks the things that fail silently at run time:
bad values, an OTLP endpoint nobody listens on, a taken admin port, an app
that does not import. It exits 1 with one ``problem:`` line per finding.
"""

from __future__ import annotations

import argparse
import errno
import http.client
import importlib
import logging
import os
import socket
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, TextIO
from urllib.parse import urlsplit

from otel_asgi_kit.settings import VARS, Settings, Var, load_settings
from otel_asgi_kit.stacks import SERVERS, UNTRACEABLE, detect_framework, installed_version, server_status
from otel_asgi_kit.version import __version__

CONNECT_TIMEOUT_S = 2.0
_SIGNAL_EXPORTERS = {"traces": "traces_exporters", "metrics": "metrics_exporters", "logs": "logs_exporters"}


@dataclass
class Report:
    out: TextIO
    problems: list[str] = field(default_factory=list)

    def line(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def problem(self, text: str) -> None:
        self.problems.append(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="otel-asgi-kit", description="OpenTelemetry for ASGI apps.")
    commands = parser.add_subparsers(dest="command", required=True)
    doctor_parser = commands.add_parser("doctor", help="show the effective configuration and check it")
    doctor_parser.add_argument("app", nargs="?", help="the app as module:attribute, e.g. shop:app")
    parser.add_argument("--version", action="version", version=f"otel-asgi-kit {__version__}")
    args = parser.parse_args(argv)
    return doctor(args.app, os.environ, sys.stdout)


def doctor(app: str | None, environ: Mapping[str, str], out: TextIO) -> int:
    report = Report(out)
    settings = load_settings(environ)
    report.line(f"otel-asgi-kit {__version__} doctor (Python {sys.version.split()[0]}, {sys.executable})")
    show_configuration(report, settings, environ)
    report.problems.extend(settings.problems)
    if settings.sdk_disabled:
        report.line("\nOTEL_SDK_DISABLED is true: the kit records nothing; nothing else is checked.")
    else:
        check_endpoints(report, settings)
        check_admin_port(report, settings)
        check_distros(report, environ)
    if app is not None:
        check_app(report, app)
    show_servers(report)
    show_fast_paths(report, settings.accelerator)
    report.line()
    if not report.problems:
        report.line("No problems found.")
        return 0
    for problem in report.problems:
        report.line(f"problem: {problem}")
    return 1


def shown_value(var: Var[Any], environ: Mapping[str, str], source: str) -> str:
    """The text in effect: the environment's when it was used, else the default; secrets hidden."""
    text = environ.get(var.name, "") if source == "env" else var.default
    if var.secret or (var.name.startswith("OTEL_EXPORTER_OTLP_") and var.name.endswith("HEADERS")):
        return "***" if text else ""
    return text if text.isprintable() else repr(text)


def show_configuration(report: Report, settings: Settings, environ: Mapping[str, str]) -> None:
    report.line("\nConfiguration (value, source):")
    width = max(len(v.name) for v in VARS)
    for var in VARS:
        source = settings.sources.get(var.name) or ("kit default" if var.kit_default else "default")
        value = shown_value(var, environ, source) or "-"
        if source == "rejected":
            # The value in effect is the default; say what was refused.
            given = settings.rejected.get(var.name, "?")
            report.line(f"  {var.name:<{width}}  {value}  [rejected {given}; using the default]")
        else:
            report.line(f"  {var.name:<{width}}  {value}  [{source}]")


def _exported_signals(settings: Settings) -> list[str]:
    return [s for s, attr in _SIGNAL_EXPORTERS.items() if "otlp" in getattr(settings, attr)]


def check_endpoints(report: Report, settings: Settings) -> None:
    signals = _exported_signals(settings)
    report.line("\nOTLP endpoints:")
    if not signals:
        report.line("  none: no signal is exported over OTLP")
        return
    by_address: dict[tuple[str, int], list[str]] = {}
    for signal in signals:
        target = settings.otlp[signal]
        parts = urlsplit(target.endpoint)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        by_address.setdefault((parts.hostname or "", port), []).append(signal)
    for (host, port), grouped in by_address.items():
        error = tcp_error(host, port)
        state = "accepts connections" if error is None else f"not reachable: {error}"
        for signal in grouped:
            target = settings.otlp[signal]
            report.line(f"  {signal:<8} {target.endpoint} ({target.protocol}): {state}")
        if error is not None:
            report.problem(
                f"OTLP endpoint {host}:{port} ({', '.join(grouped)}) is not reachable: {error}; "
                "start a collector there or set OTEL_EXPORTER_OTLP_ENDPOINT"
            )


def tcp_error(host: str, port: int, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """``None`` when ``host:port`` accepts a TCP connection within ``timeout``, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)


def check_admin_port(report: Report, settings: Settings) -> None:
    host, port = settings.admin_host, settings.admin_port
    report.line("\nAdmin port (OTEL_EXPORTER_PROMETHEUS_HOST/PORT):")
    error = bind_error(host, port)
    if error is None:
        report.line(f"  {host}:{port}: free")
        return
    if _serves_kit_healthz(host, port):
        report.line(f"  {host}:{port}: in use by a running otel-asgi-kit (/healthz answers)")
        return
    report.line(f"  {host}:{port}: cannot bind: {error}")
    report.problem(
        f"admin port {host}:{port} cannot be bound ({error}); /metrics would not be served - "
        "set OTEL_EXPORTER_PROMETHEUS_PORT to a free port"
    )


def bind_error(host: str, port: int) -> str | None:
    """``None`` when ``host:port`` can be bound the way the admin server binds it."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return f"cannot resolve {host!r}: {exc.strerror or exc}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        # Like http.server: a port in TIME_WAIT is free to bind.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            return "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
    return None


def _serves_kit_healthz(host: str, port: int) -> bool:
    connection = http.client.HTTPConnection(host, port, timeout=CONNECT_TIMEOUT_S)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        return response.status == 200 and response.read(16) == b"ok\n"
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def check_distros(report: Report, environ: Mapping[str, str]) -> None:
    """``opentelemetry-instrument`` loads one distro; another installed one may win."""
    others = sorted(
        f"{ep.name} ({ep.value})" for ep in entry_points(group="opentelemetry_distro") if ep.name != "otel_asgi_kit"
    )
    if others and not environ.get("OTEL_PYTHON_DISTRO"):
        report.problem(
            f"other OpenTelemetry distros are installed: {', '.join(others)}; opentelemetry-instrument may load "
            "one of them instead of the kit - uninstall it or set OTEL_PYTHON_DISTRO=otel_asgi_kit"
        )


def check_app(report: Report, spec: str) -> None:
    report.line(f"\nApp {spec}:")
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        report.line("  not in the form module:attribute")
        report.problem(f"APP {spec!r} is not in the form module:attribute (e.g. shop:app)")
        return
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        target: Any = importlib.import_module(module_name)
        for name in attribute.split("."):
            target = getattr(target, name)
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
        report.line(f"  cannot be loaded: {detail}")
        report.problem(f"APP {spec!r} cannot be loaded: {detail}")
        return
    if type(target).__module__.partition(".")[0] == "aiohttp":
        # Not ASGI, and needs no wrapping: the kit hooks aiohttp's own server (docs/aiohttp.md).
        report.line(f"  framework: aiohttp.web ({type(target).__name__}), traced through the kit's aiohttp hooks")
        return
    framework, wrapped = detect_framework(target)
    if framework is None:
        report.line(f"  {type(target).__name__} is not an ASGI app")
        report.problem(f"APP {spec!r} is a {type(target).__name__}, not an ASGI app (an async callable)")
        return
    note = " (already wrapped by otel_asgi_kit.instrument)" if wrapped else ""
    report.line(f"  framework: {framework.name}{note}")
    report.line(f"  routes named: {framework.routes}")


def show_servers(report: Report) -> None:
    """Each server the kit hooks: installed or not, and whether the installed release is hooked."""
    report.line("\nServers:")
    for server in SERVERS:
        installed = installed_version(server.name)
        if installed is None:
            report.line(f"  {server.name}: not installed")
            continue
        status = server_status(server)
        report.line(f"  {server.name} {installed}: {status}")
        if status.startswith("NOT"):
            report.problem(
                f"{server.name} {installed} is installed but not hooked: {status.removeprefix('NOT hooked: ')}"
            )
    for name, what in UNTRACEABLE:
        installed = installed_version(name)
        if installed is not None:
            report.line(f"  {name} {installed}: {what}; the kit cannot trace requests it serves")
    report.line("  under any other server, wrap the app with otel_asgi_kit.instrument(app)")


def fast_paths() -> dict[str, bool]:
    """Whether the kit's shortcuts around the SDK apply to the installed SDK and exporter releases."""
    from otel_asgi_kit.sdk.shortcuts import status

    return status()


@contextmanager
def _sdk_messages() -> Iterator[list[str]]:
    """What the SDK logs meanwhile, kept as lines for the report instead of landing amid its table."""
    messages: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(f"{record.name}: {record.getMessage()}")

    logger = logging.getLogger("opentelemetry")
    keep, propagate = Keep(logging.WARNING), logger.propagate
    logger.addHandler(keep)
    logger.propagate = False
    try:
        yield messages
    finally:
        logger.removeHandler(keep)
        logger.propagate = propagate


def show_fast_paths(report: Report, accelerator: bool = True) -> None:
    from otel_asgi_kit.sdk import accel

    with _sdk_messages() as messages:
        found = fast_paths()
        encoder = accel.use(accelerator)
    for message in messages:
        report.problem(f"the OpenTelemetry SDK said: {message}")
    slow = [name for name, on in found.items() if not on]
    report.line(f"\nFast paths: {'all on' if not slow else 'off for ' + ', '.join(slow)}")
    report.line(f"  compiled parts: {encoder}")
    if slow:
        report.line(
            "  the installed opentelemetry-sdk/exporter changed what these rely on; the SDK's own code runs "
            "instead (same telemetry, more CPU per request)"
        )


if __name__ == "__main__":
    sys.exit(main())
