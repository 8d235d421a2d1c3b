"""``configure()``: settings → providers → logging → server hooks, once per process.

Pre-fork servers need care: gunicorn's master runs this before it forks its
workers, and providers built there would be shared by every worker (one
``service.instance.id``, threads that do not survive ``fork``). In a gunicorn
master (and Granian's main process, which never serves requests itself) only
the admin port and the stdout logs are set up; each worker builds its own
providers right after the fork.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from opentelemetry import metrics, trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from otel_asgi_kit import _state
from otel_asgi_kit.admin import AdminServer, start_admin_server
from otel_asgi_kit.aiohttp.hooks import install_aiohttp_hooks
from otel_asgi_kit.asgi.servers import install_server_hooks
from otel_asgi_kit.asgi.unhooked import install as install_unhooked_checks
from otel_asgi_kit.core.instrumentation import Instrumentation
from otel_asgi_kit.executor_context import install_executor_context
from otel_asgi_kit.export.health import ExportHealth, install_sdk_diagnostics
from otel_asgi_kit.export.otlp import hide_secrets_in_sdk_warnings
from otel_asgi_kit.failsafe import warn
from otel_asgi_kit.logs.file_handler import flush_log_files
from otel_asgi_kit.logs.handlers import install_log_handlers, restore_log_handlers
from otel_asgi_kit.loop_health import start_loop_health
from otel_asgi_kit.metrics.http_aggregator import HttpServerMetrics
from otel_asgi_kit.metrics.injector import MetricsInjector
from otel_asgi_kit.metrics.prometheus import MergedPrometheusReader
from otel_asgi_kit.metrics.websocket_aggregator import WebSocketMetrics
from otel_asgi_kit.pages import install_pages
from otel_asgi_kit.pages.dashboard import install_dashboard
from otel_asgi_kit.process_role import process_role
from otel_asgi_kit.providers import build_logger_provider, build_meter_provider, build_tracer_provider
from otel_asgi_kit.redaction import QueryRedactor, install_access_log_redaction
from otel_asgi_kit.resource import build_resource
from otel_asgi_kit.runtime_metrics import register_runtime_metrics
from otel_asgi_kit.sdk import accel, span_end
from otel_asgi_kit.settings import Settings, env_name, load_settings
from otel_asgi_kit.shutdown import BoundedShutdown
from otel_asgi_kit.spool import ProcessSpool
from otel_asgi_kit.version import SCOPE_NAME, SCOPE_VERSION


@dataclass(frozen=True)
class Kit:
    """What ``configure`` set up in this process."""

    settings: Settings
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider
    instrumentation: Instrumentation
    shutdown: BoundedShutdown


_lock = threading.Lock()
_kit: Kit | None = None
_admin: AdminServer | None = None
_configured = False


def current_kit() -> Kit | None:
    return _kit


def configure(environ: Mapping[str, str] | None = None) -> Kit | None:
    """Set up traces, metrics and logs from the environment; a second call returns the first result.

    Returns ``None`` when ``OTEL_SDK_DISABLED`` is true, in a server's
    supervisor (its workers set themselves up) and in multiprocessing's
    helper processes (``process_role``).
    """
    global _kit, _configured
    with _lock:
        if _configured:
            return _kit
        _configured = True
        settings = load_settings(os.environ if environ is None else environ)
        for problem in settings.problems:
            warn(problem)
        role = process_role()
        if settings.sdk_disabled or role == "helper":
            return None
        hide_secrets_in_sdk_warnings()
        snapshot_dir, inherited = _metrics_dir(settings)
        resource = build_resource(settings)
        if role == "supervisor":
            install_log_handlers(settings, None)
            if settings.auto_instrument:
                install_server_hooks(restore_log_handlers, _shutdown_current, _OTHER_SERVERS)
            _open_admin(settings, resource, snapshot_dir, None, inherited)
            # gunicorn forks its workers: each builds its own providers right after the fork.
            # uvicorn and hypercorn spawn theirs, which run configure() themselves.
            os.register_at_fork(after_in_child=lambda: _configure_worker(settings, snapshot_dir))
            return None
        _kit = _build(settings, resource, snapshot_dir, inherited)
        _state.install(_kit.instrumentation)
    atexit.register(_kit.shutdown)
    return _kit


def _configure_worker(settings: Settings, snapshot_dir: Path | None) -> None:
    """In a freshly forked worker: its own instance, providers and threads."""
    global _kit, _admin
    _drop_supervisor_stop_handlers()  # first: the set-up below takes 100-300 ms
    if _admin is not None:
        _admin.close_inherited()  # the master serves the admin port, not the worker
        _admin = None
    _kit = _build(settings, build_resource(settings), snapshot_dir, inherited=True)
    _state.install(_kit.instrumentation)
    atexit.register(_kit.shutdown)


# How supervisors stop their workers: gunicorn's master sends SIGTERM (graceful) or SIGQUIT (quick),
# Granian's SIGTERM; a terminal's Ctrl-C sends SIGINT to the whole process group.
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def _drop_supervisor_stop_handlers() -> None:
    """In a freshly forked worker: a stop signal must not reach the supervisor's handlers.

    The worker runs its parent's Python signal handlers until it sets its own (gunicorn in
    ``Worker.init_signals``, Granian when its loop starts). Gunicorn's master handler queues the
    signal for the master's main loop, which never runs here: a SIGTERM or SIGQUIT sent meanwhile
    is lost, and the worker serves on until the master's graceful timeout kills it. Without the
    kit that window lasts a few ms; ``_configure_worker`` makes it 100-300 ms. A stop signal in it
    now ends the worker at once (it has served nothing yet): SIGTERM and SIGINT by their default
    action, as gunicorn's own ``Worker.init_signals`` resets them; SIGQUIT with exit status 0, as
    gunicorn's worker quits, not by its default action, which dumps core. The worker's own
    handlers replace these as before.
    """
    for sig in _STOP_SIGNALS:
        handler = signal.getsignal(sig)
        if not callable(handler) or handler is signal.default_int_handler:
            continue  # no Python handler, or Python's own KeyboardInterrupt: nothing of the supervisor's
        try:
            signal.signal(sig, _quit_at_once if sig == signal.SIGQUIT else signal.SIG_DFL)
        except (ValueError, OSError):  # not forked from the main thread
            return


def _quit_at_once(signum: int, frame: object) -> None:
    os._exit(0)


def _metrics_dir(settings: Settings) -> tuple[Path | None, bool]:
    """The shared snapshot directory, and whether it came from outside (a parent or the user)."""
    if "prometheus" not in settings.metrics_exporters:
        return None, False
    if settings.metrics_dir:
        path = Path(settings.metrics_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path, True
    path = Path(tempfile.mkdtemp(prefix="otel-asgi-kit-metrics-"))
    # Workers started after this point (spawned or forked) inherit it and write there.
    os.environ[env_name("metrics_dir")] = str(path)
    _owned_dirs.append((path, os.getpid()))
    atexit.register(_remove_owned_dirs)
    return path, False


_owned_dirs: list[tuple[Path, int]] = []


def _remove_owned_dirs() -> None:
    """The snapshot dir this process made, removed by the process that made it (never by a worker)."""
    for path, owner in _owned_dirs:
        if os.getpid() == owner:
            shutil.rmtree(path, ignore_errors=True)


def _open_admin(
    settings: Settings,
    resource: Resource,
    snapshot_dir: Path | None,
    own_reader: MetricReader | None,
    inherited: bool,
) -> None:
    global _admin
    if snapshot_dir is None:
        return
    registry = CollectorRegistry(auto_describe=True)
    MergedPrometheusReader(snapshot_dir, resource, registry, own_reader)
    # A worker whose parent already serves the port stays quiet about the clash.
    _admin = start_admin_server(
        settings.admin_host,
        settings.admin_port,
        registry,
        quiet=inherited,
        token=settings.admin_token or "",
        pages_public=settings.pages_public,
    )
    if _admin is not None and settings.pages:
        # In the process that serves the port: it sums every worker's snapshot.
        install_dashboard(snapshot_dir, settings.dashboard_interval_s, str(resource.attributes.get("service.name")))


def _shutdown_current() -> None:
    """At the end of the server's serve loop: flush, then clean up — the process may die by a
    re-raised signal right after this, without atexit (uvicorn does that)."""
    if _kit is not None:
        _kit.shutdown()
    _remove_owned_dirs()


# The servers of the aiohttp adapter, hooked beside the ASGI servers (``asgi.servers``).
_OTHER_SERVERS = (("aiohttp", lambda _after_logging_config: install_aiohttp_hooks(_shutdown_current)),)


def _build(settings: Settings, resource: Resource, snapshot_dir: Path | None, inherited: bool) -> Kit:
    health = ExportHealth()
    install_sdk_diagnostics(health)
    accel.use(settings.accelerator)
    # The SDK's self-metrics (drops, failed exports) bind through the global
    # meter provider, set just below, so they land on /metrics too.
    http_metrics = HttpServerMetrics(settings.duration_buckets)
    websocket_metrics = WebSocketMetrics()
    inject = MetricsInjector(resource, http_metrics.collect, websocket_metrics.collect)
    meter_provider, snapshot_reader = build_meter_provider(settings, resource, snapshot_dir, health, inject)
    spool = ProcessSpool(settings.spool, settings.shutdown_timeout_s, health)
    tracer_provider = build_tracer_provider(settings, resource, health, spool)
    logger_provider = build_logger_provider(settings, resource, health, spool)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    set_logger_provider(logger_provider)
    instrumentation = Instrumentation(
        settings,
        tracer_provider,
        meter_provider if settings.metrics_exporters else None,
        http_metrics,
        websocket_metrics,
    )
    install_log_handlers(settings, logger_provider)
    if settings.runtime_metrics:
        register_runtime_metrics(meter_provider.get_meter(SCOPE_NAME, SCOPE_VERSION))
    start_loop_health(settings, meter_provider)
    if settings.pages:
        install_pages(tracer_provider)
    if accel.compiled():  # every span processor is in place now: the adapters' spans end in C where it applies
        instrumentation.end_span = span_end.compiled_ender(instrumentation.server_spans)
        # and start there (root spans, for the adapters that start spans from Python: aiohttp)
        instrumentation.server_spans.use_root_maker()
    install_access_log_redaction(QueryRedactor(settings.redact_query_params))
    install_executor_context()
    if settings.auto_instrument:
        install_server_hooks(restore_log_handlers, _shutdown_current, _OTHER_SERVERS)
    install_unhooked_checks(instrumentation.excluded)
    if _admin is None:
        _open_admin(settings, resource, snapshot_dir, snapshot_reader, inherited)
    shutdown = BoundedShutdown(
        [
            ("traces", tracer_provider.shutdown),
            ("logs", logger_provider.shutdown),
            ("metrics", meter_provider.shutdown),
            ("log files", flush_log_files),
        ],
        settings.shutdown_timeout_s,
    )
    return Kit(
        settings=settings,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        logger_provider=logger_provider,
        instrumentation=instrumentation,
        shutdown=shutdown,
    )
