"""The trace pages as one self-contained HTML document (inline CSS, no scripts, no external assets) and as JSON.

``/kit/traces`` lists routes (requests, failures, slowest, recent), recent
requests and failed requests; ``/kit/traces?trace=<id>`` shows one trace's
spans with attributes and events, and the log lines written inside it. Every
value comes from requests, so everything is escaped.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from html import escape
from typing import Any
from urllib.parse import parse_qs

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from otel_asgi_kit.pages.filters import apply, parse_filter
from otel_asgi_kit.pages.recorder import LogLine, Snapshot, TraceLogBuffer, TraceRecorder, duration_ns, is_failed

Page = Callable[[str], tuple[int, str, bytes]]
HTML = "text/html; charset=utf-8"
JSON = "application/json"
_TRACE_ID = re.compile(r"[0-9a-f]{32}")

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d1d1f;background:#fff}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.6em 0 .4em}h3{font-size:1em;margin:1.2em 0 .3em}
.meta{color:#666}nav a{margin-right:1em}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25em .6em;border-bottom:1px solid #e3e3e3;
vertical-align:top}th{background:#f5f5f7;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em}
a{color:#0645ad;text-decoration:none}a:hover{text-decoration:underline}
tr.failed td,tr.failed td a,span.failed,.failed{color:#b00020}tr.failed{background:#fff0f1}
.chip{display:inline-block;margin:0 .4em .2em 0}
.bar{position:relative;height:.8em;background:#f0f0f3;min-width:12em}
.bar i{position:absolute;top:0;bottom:0;background:#4a7bd0;min-width:1px}.bar i.failed{background:#b00020}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.1em 1em;margin:.3em 0 .3em 1em}dt{color:#555}
dd{margin:0;font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;word-break:break-all}
pre{margin:0;white-space:pre-wrap;word-break:break-word}.empty{color:#888;font-style:italic}
"""


def page_handlers(recorder: TraceRecorder, logs: TraceLogBuffer, service: str) -> tuple[Page, Page]:
    """The ``/kit/traces`` and ``/kit/traces.json`` handlers for the admin port."""

    def html_page(query: str) -> tuple[int, str, bytes]:
        trace_id = _trace_param(query)
        if trace_id is None:
            try:
                keep = parse_filter(query)
            except ValueError as exc:
                return 400, "text/plain; charset=utf-8", f"{exc}\n".encode()
            snapshot = recorder.snapshot()
            if not keep.active:
                return 200, HTML, render_index(snapshot, service).encode()
            return 200, HTML, render_index(apply(snapshot, keep), service, keep.describe()).encode()
        spans = recorder.trace(trace_id)
        status = 200 if spans else 404
        return status, HTML, render_trace(trace_id, spans, logs.lines(trace_id), service).encode()

    def json_page(query: str) -> tuple[int, str, bytes]:
        trace_id = _trace_param(query)
        if trace_id is None:
            try:
                keep = parse_filter(query)
            except ValueError as exc:
                return 400, JSON, _dumps({"error": str(exc)})
            return 200, JSON, _dumps(index_json(apply(recorder.snapshot(), keep), service))
        spans = recorder.trace(trace_id)
        return (200 if spans else 404), JSON, _dumps(trace_json(trace_id, spans, logs.lines(trace_id)))

    return html_page, json_page


def _trace_param(query: str) -> int | None:
    value = (parse_qs(query).get("trace") or [""])[0].strip().lower()
    return int(value, 16) if _TRACE_ID.fullmatch(value) else None


def _dumps(data: Any) -> bytes:
    return json.dumps(data, default=str, indent=1).encode()


# -- JSON -------------------------------------------------------------------


def summary(span: ReadableSpan) -> dict[str, Any]:
    attributes = span.attributes or {}
    ctx = span.context
    return {
        "trace_id": f"{ctx.trace_id:032x}" if ctx else "",
        "span_id": f"{ctx.span_id:016x}" if ctx else "",
        "name": span.name,
        "route": attributes.get("http.route"),
        "method": attributes.get("http.request.method"),
        "path": attributes.get("url.path"),
        "status_code": attributes.get("http.response.status_code"),
        "duration_ms": round(duration_ns(span) / 1e6, 3),
        "start": _iso(span.start_time),
        "failed": is_failed(span),
    }


def index_json(snapshot: Snapshot, service: str) -> dict[str, Any]:
    return {
        "service": service,
        "pid": os.getpid(),
        "since": _iso(snapshot.started_ns),
        "routes": [
            {
                "name": r.name,
                "requests": r.requests,
                "failed": r.failed,
                "slowest": [summary(s) for s in r.slowest],
            }
            for r in snapshot.routes
        ],
        "recent": [summary(s) for s in snapshot.recent],
        "failed": [summary(s) for s in snapshot.failed],
    }


def trace_json(trace_id: int, spans: list[ReadableSpan], lines: list[LogLine]) -> dict[str, Any]:
    return {
        "trace_id": f"{trace_id:032x}",
        "spans": [
            {
                **summary(s),
                "parent_span_id": f"{s.parent.span_id:016x}" if s.parent else None,
                "kind": s.kind.name,
                "status": s.status.status_code.name,
                "status_description": s.status.description,
                "attributes": dict(s.attributes or {}),
                "events": [
                    {"name": e.name, "time": _iso(e.timestamp), "attributes": dict(e.attributes or {})}
                    for e in s.events
                ],
            }
            for s in spans
        ],
        "logs": [
            {
                "time": _iso(int(line.created * 1e9)),
                "level": line.level,
                "logger": line.logger,
                "message": line.message,
                "span_id": f"{line.span_id:016x}",
            }
            for line in lines
        ],
    }


# -- HTML -------------------------------------------------------------------


def render_index(snapshot: Snapshot, service: str, filtered: str = "") -> str:
    parts = [
        _head(f"Traces · {service}"),
        f"<h1>Traces</h1><p class=meta>service <b>{escape(service)}</b> · pid {os.getpid()} · "
        f"since {escape(_iso(snapshot.started_ns))} · this process only</p>",
        '<nav><a href="#routes">Routes</a><a href="#recent">Recent</a><a href="#failed">Failed</a>'
        '<a href="traces.json">JSON</a><a href="dashboard">Dashboard</a></nav>',
        f'<p class=filter>Held requests matching: <b>{escape(filtered)}</b> · <a href="traces">show all</a></p>'
        if filtered
        else "",
        '<h2 id="routes">Routes</h2>',
    ]
    if snapshot.routes:
        recent_by_route: dict[str, list[ReadableSpan]] = {}
        for span in snapshot.recent:
            recent_by_route.setdefault(span.name, []).append(span)
        failed_by_route: dict[str, list[ReadableSpan]] = {}
        for span in snapshot.failed:
            failed_by_route.setdefault(span.name, []).append(span)
        parts.append(
            "<table class=routes><tr><th>Route</th><th>Requests</th><th>Failed</th>"
            "<th>Slowest</th><th>Recent</th><th>Recent failures</th></tr>"
        )
        for r in snapshot.routes:
            row_class = ' class="failed"' if r.failed else ""
            parts.append(
                f"<tr{row_class}><td>{escape(r.name)}</td><td class=num>{r.requests}</td>"
                f"<td class=num>{r.failed}</td><td>{_chips(r.slowest)}</td>"
                f"<td>{_chips(recent_by_route.get(r.name, [])[:5])}</td>"
                f"<td>{_chips(failed_by_route.get(r.name, [])[:5])}</td></tr>"
            )
        parts.append("</table>")
    else:
        parts.append("<p class=empty>No requests yet.</p>")
    parts.append(f'<h2 id="recent">{"Matching requests" if filtered else "Recent requests"}</h2>')
    parts.append(_requests_table(snapshot.recent))
    parts.append('<h2 id="failed">Failed requests</h2>')
    parts.append(_requests_table(snapshot.failed))
    parts.append("</body></html>")
    return "".join(parts)


def render_trace(trace_id: int, spans: list[ReadableSpan], lines: list[LogLine], service: str) -> str:
    hex_id = f"{trace_id:032x}"
    parts = [
        _head(f"Trace {hex_id} · {service}"),
        f'<nav><a href="traces">← all traces</a><a href="traces.json?trace={hex_id}">JSON</a></nav>',
        f"<h1>Trace <code>{hex_id}</code></h1>",
    ]
    if not spans:
        parts.append("<p class=empty>Not held any more: the buffers keep recent, slowest and failed requests.</p>")
        return "".join([*parts, "</body></html>"])
    start = min(s.start_time or 0 for s in spans)
    total = max(max((s.end_time or 0) for s in spans) - start, 1)
    parts.append(
        "<table class=spans><tr><th>Span</th><th>Kind</th><th>Status</th><th>Duration</th><th>Timeline</th></tr>"
    )
    for s in spans:
        failed = is_failed(s)
        offset = ((s.start_time or 0) - start) / total * 100
        width = duration_ns(s) / total * 100
        row_class = ' class="failed"' if failed else ""
        parts.append(
            f'<tr{row_class}><td><a href="#span-{_span_hex(s)}">{escape(s.name)}</a></td><td>{s.kind.name}</td>'
            f"<td>{_status(s)}</td><td class=num>{_ms(s)}</td>"
            f'<td><div class=bar><i class="{"failed" if failed else ""}" '
            f'style="left:{offset:.2f}%;width:{width:.2f}%"></i></div></td></tr>'
        )
    parts.append("</table>")
    for s in spans:
        parts.append(f'<h3 id="span-{_span_hex(s)}"{" class=failed" if is_failed(s) else ""}>{escape(s.name)}</h3>')
        parts.append(f"<p class=meta>span <code>{_span_hex(s)}</code>")
        if s.parent is not None:
            parts.append(f" · parent <code>{s.parent.span_id:016x}</code>")
        parts.append(f" · {escape(_iso(s.start_time))} · {_ms(s)} · {_status(s)}</p>")
        parts.append(_attributes(s.attributes or {}))
        for event in s.events:
            parts.append(f"<p><b>event</b> {escape(event.name)} · {escape(_iso(event.timestamp))}</p>")
            parts.append(_attributes(event.attributes or {}))
    parts.append("<h2>Log lines</h2>")
    if lines:
        parts.append("<table class=logs><tr><th>Time</th><th>Level</th><th>Logger</th><th>Message</th></tr>")
        for line in lines:
            row_class = ' class="failed"' if line.level in ("ERROR", "CRITICAL") else ""
            parts.append(
                f"<tr{row_class}><td class=mono>{escape(_iso(int(line.created * 1e9)))}</td>"
                f"<td>{escape(line.level)}</td><td>{escape(line.logger)}</td>"
                f"<td><pre>{escape(line.message)}</pre></td></tr>"
            )
        parts.append("</table>")
    else:
        parts.append("<p class=empty>No log lines held for this trace.</p>")
    parts.append("</body></html>")
    return "".join(parts)


def _head(title: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
    )


def _requests_table(spans: list[ReadableSpan]) -> str:
    if not spans:
        return "<p class=empty>None held.</p>"
    rows = [
        "<table class=requests><tr><th>Time</th><th>Request</th><th>Path</th><th>Status</th>"
        "<th>Duration</th><th>Trace</th></tr>"
    ]
    for s in spans:
        attributes = s.attributes or {}
        row_class = ' class="failed"' if is_failed(s) else ""
        trace_hex = f"{s.context.trace_id:032x}" if s.context else ""
        rows.append(
            f"<tr{row_class}><td class=mono>{escape(_iso(s.start_time))}</td><td>{escape(s.name)}</td>"
            f"<td class=mono>{escape(str(attributes.get('url.path', '')))}</td>"
            f"<td>{escape(str(attributes.get('http.response.status_code', '')))}</td>"
            f"<td class=num>{_ms(s)}</td>"
            f'<td class=mono><a href="traces?trace={trace_hex}">{trace_hex}</a></td></tr>'
        )
    rows.append("</table>")
    return "".join(rows)


def _chips(spans: list[ReadableSpan]) -> str:
    if not spans:
        return ""
    return "".join(
        f'<a class="chip{" failed" if is_failed(s) else ""}" href="traces?trace={s.context.trace_id:032x}">{_ms(s)}</a>'
        for s in spans
        if s.context is not None
    )


def _attributes(attributes: Mapping[str, Any]) -> str:
    if not attributes:
        return ""
    items = "".join(f"<dt>{escape(str(k))}</dt><dd>{escape(_value(v))}</dd>" for k, v in attributes.items())
    return f"<dl>{items}</dl>"


def _value(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _status(span: ReadableSpan) -> str:
    code = span.status.status_code
    text = code.name if code is not StatusCode.UNSET else "unset"
    if span.status.description:
        text = f"{text}: {span.status.description}"
    return escape(text)


def _span_hex(span: ReadableSpan) -> str:
    return f"{span.context.span_id:016x}" if span.context else ""


def _ms(span: ReadableSpan) -> str:
    return f"{duration_ns(span) / 1e6:.1f} ms"


def _iso(ns: int | None) -> str:
    if not ns:
        return ""
    moment = datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
