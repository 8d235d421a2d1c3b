"""The live RED dashboard on the admin port: ``/kit/`` (``/kit/dashboard``), its data and its script.

The page is static HTML; ``dashboard.js`` (the kit's own small canvas
charts, shipped in the package: nothing is fetched from elsewhere) polls
``/kit/dashboard.json`` and redraws. The data comes from
``DashboardSampler``'s ring, so a page view reads memory and never touches
the request path; clicks lead to ``/kit/traces`` filtered by route,
slowness or failure.
"""

from __future__ import annotations

import json
import time
from html import escape
from importlib.resources import files
from pathlib import Path
from typing import Any

from otel_asgi_kit import admin
from otel_asgi_kit.failsafe import report_once
from otel_asgi_kit.pages.dashboard_query import BadParameterError, build, parse_query
from otel_asgi_kit.pages.dashboard_sampler import DashboardSampler

HTML = "text/html; charset=utf-8"
JSON = "application/json"

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.2em 1.5em;color:#1d1d1f;background:#fff}
h1{font-size:1.35em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .3em}h3{font-size:1em;margin:1em 0 0}
.meta{color:#666;margin:.1em 0}nav a{margin-right:1em}a{color:#0645ad;text-decoration:none}
button{font:inherit;border:1px solid #ccc;background:#f5f5f7;padding:.15em .7em;border-radius:4px;cursor:pointer}
button.on{background:#4a7bd0;color:#fff;border-color:#4a7bd0}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:.6em 1.2em}
figure{margin:0}figcaption{font-size:.85em;color:#555}canvas{width:100%;height:120px;display:block}
#error{color:#b00020}section.route{border-top:1px solid #eee}
"""


def page(service: str, interval_s: float) -> str:
    charts = [
        ("WebSocket connections open", "ws-active"),
        ("WebSocket messages/s", "ws-messages"),
        ("Event-loop lag p99 (ms)", "loop-lag"),
        ("Blocked-loop events", "loop-blocked"),
        ("CPU % of one core (all workers, and each)", "cpu"),
        ("Resident memory MB", "memory"),
    ]
    system = "".join(f'<figure><figcaption>{t}</figcaption><canvas id="{i}"></canvas></figure>' for t, i in charts)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>Dashboard · {escape(service)}</title><style>{_CSS}</style>"
        '<script src="dashboard.js"></script></head>'
        f'<body data-interval="{interval_s:g}">'
        f"<h1>Dashboard · {escape(service)}</h1>"
        '<nav><a href="traces">Traces</a><a href="dashboard.json">JSON</a>'
        '<button data-window="5m" class="on">5 min</button> <button data-window="15m">15 min</button> '
        '<button data-window="60m">60 min</button></nav>'
        '<p class="meta" id="updated">loading…</p><p id="error" hidden></p>'
        '<h2>All requests</h2><p class="meta" id="overall-summary"></p><div class="charts">'
        '<figure><figcaption>Requests/s</figcaption><canvas id="overall-rate"></canvas></figure>'
        "<figure><figcaption>Failed/s: 5xx and exceptions (click: failed requests)</figcaption>"
        '<canvas id="overall-errors"></canvas></figure>'
        "<figure><figcaption>Latency ms p50/p95/p99 (click: requests this slow)</figcaption>"
        '<canvas id="overall-latency"></canvas></figure></div>'
        '<h2>By route</h2><p class="meta" id="no-routes">No requests yet.</p><div id="routes"></div>'
        f'<h2>WebSocket, event loop, process</h2><div class="charts">{system}</div>'
        "</body></html>"
    )


def handlers(sampler: DashboardSampler, service: str) -> dict[str, admin.Page]:
    """The admin-port routes of the dashboard."""
    script = files("otel_asgi_kit.pages").joinpath("dashboard.js").read_bytes()
    html = page(service, sampler.interval_s).encode()

    def html_page(query: str) -> tuple[int, str, bytes]:
        return 200, HTML, html

    def script_file(query: str) -> tuple[int, str, bytes]:
        return 200, "text/javascript; charset=utf-8", script

    def data(query: str) -> tuple[int, str, bytes]:
        intervals, routes = sampler.snapshot()
        try:
            window_s, points, route = parse_query(query, routes)
        except BadParameterError as exc:
            return 400, JSON, _dumps({"error": str(exc), "parameter": exc.name})
        doc = build(
            intervals,
            routes,
            sampler.bounds,
            sampler.lag_bounds,
            time.time(),
            window_s,
            points,
            sampler.interval_s,
            route,
        )
        return 200, JSON, _dumps(doc)

    return {
        "/kit/": html_page,
        "/kit/dashboard": html_page,
        "/kit/dashboard.js": script_file,
        "/kit/dashboard.json": data,
    }


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def install_dashboard(directory: Path, interval_s: float, service: str) -> DashboardSampler | None:
    """Start sampling ``directory``'s snapshots and serve the dashboard on the admin port.

    A failure here (the packaged script unreadable, no thread to be had) costs the dashboard, never the app.
    """
    try:
        sampler = DashboardSampler(directory, interval_s)
        routes = handlers(sampler, service)
        sampler.start()
    except Exception as exc:
        report_once("starting the dashboard (/kit/dashboard is not served)", exc)
        return None
    for path, handler in routes.items():
        admin.add_route(path, handler)
    return sampler
