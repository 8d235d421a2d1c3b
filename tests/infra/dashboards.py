"""What the provisioned Grafana dashboards query, and what a live scrape exposes.

Enough PromQL to pull metric and label names out of the dashboards'
expressions (no full parser): strings, range selectors and Grafana variables
are dropped, identifiers followed by ``(`` are functions, and grouping clauses
(``by (...)``) only contribute label names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.infra.services import REPO_ROOT

DASHBOARD_DIR = REPO_ROOT / "deploy" / "grafana" / "dashboards"

SPAN_METRICS_PREFIX = "traces_span_metrics_"
"""Names the collector's span_metrics connector makes (checked against a collector scrape, not the app's)."""

SCRAPE_LABELS = frozenset({"job", "instance"})
"""Added by Prometheus at scrape time, so absent from an exporter's own /metrics."""

_IDENT = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{([^}]*)\}")
_MATCHER_LABEL = re.compile(rf"({_IDENT})\s*(?:=~|!~|!=|=)")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_LABEL_VALUES = re.compile(rf"\blabel_values\s*\(([^,()]*),\s*({_IDENT})\s*\)")
_TOKEN = re.compile(rf"(?<![\w$.:])({_IDENT})(\s*\()?")
_KEYWORDS = frozenset({"and", "or", "unless", "offset", "bool", "group_left", "group_right", "inf", "nan", "atan2"})


@dataclass
class Query:
    """One PromQL expression of a dashboard and the names it depends on."""

    where: str
    expr: str
    metrics: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)


def parse_expr(expr: str, where: str = "") -> Query:
    """Metric names and label names (matchers and grouping clauses) used by ``expr``."""
    query = Query(where, expr)
    # Grafana's label_values(metric{...}, label): the metric, plus a label it reads.
    query.labels.update(label for _, label in _LABEL_VALUES.findall(expr))
    text = _LABEL_VALUES.sub(r"\1", expr)
    # Strings only ever appear as matcher values: drop them before looking at braces.
    text = _STRING.sub('""', text)
    for block in _MATCHERS.findall(text):
        query.labels.update(_MATCHER_LABEL.findall(block))
    text = _MATCHERS.sub(" ", text)
    for block in _GROUPING.findall(text):
        query.labels.update(name.strip() for name in block.split(",") if name.strip())
    text = _GROUPING.sub(" ", text)
    text = _VARIABLE.sub(" ", _RANGE.sub(" ", text))
    for match in _TOKEN.finditer(text):
        name, is_call = match.group(1), match.group(2)
        if not is_call and name not in _KEYWORDS:
            query.metrics.add(name)
    return query


def dashboard_files(directory: Path = DASHBOARD_DIR) -> list[Path]:
    return sorted(directory.glob("*.json"))


def dashboard_queries(path: Path) -> list[Query]:
    """Every panel target ``expr`` and every query variable of one dashboard JSON file."""
    dashboard = json.loads(path.read_text())
    queries = [parse_expr(expr, f"{path.name}: {where}") for where, expr in _panel_exprs(dashboard.get("panels", []))]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        raw = variable.get("query")
        expr = raw.get("query") if isinstance(raw, dict) else raw
        if expr:
            queries.append(parse_expr(expr, f"{path.name}: variable ${variable['name']}"))
    return queries


def _panel_exprs(panels: Iterable[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    for panel in panels:
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield f"panel {panel.get('title')!r} target {target.get('refId')}", target["expr"]
        # Collapsed rows keep their panels inside the row.
        yield from _panel_exprs(panel.get("panels", []))


def scraped_series(exposition: str) -> dict[str, set[str]]:
    """Sample name -> label names seen on it, from Prometheus text exposition."""
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
    return found


def missing_names(query: Query, series: dict[str, set[str]]) -> list[str]:
    """What ``query`` asks for that ``series`` does not have: unknown metrics, or labels none of its metrics carry."""
    problems = [f"metric {name}" for name in sorted(query.metrics) if name not in series]
    carried = set().union(*(series.get(name, set()) for name in query.metrics))
    problems += [f"label {label}" for label in sorted(query.labels - carried - SCRAPE_LABELS)]
    return problems


_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_BY = re.compile(r"\bby\s*\(([^)]*)\)")


def legend_problems(expr: str, legend: str) -> list[str]:
    """What is wrong with a target's legend: empty, naming a label the query sums away, or not telling series apart."""
    if not legend.strip():
        return ["empty legend"]
    named = set(_PLACEHOLDER.findall(legend))
    groupings = _BY.findall(_STRING.sub('""', expr))
    if not groupings or re.search(r"\bwithout\s*\(", expr):
        return []  # no aggregation (or one that keeps unknown labels): any label may be there
    kept = {name.strip() for block in groupings for name in block.split(",") if name.strip()} - {"le"}
    problems = [f"legend names {{{{{name}}}}}, which the query sums away" for name in sorted(named - kept)]
    if kept and not named & kept:
        problems.append(f"series differ by {sorted(kept)} but the legend names none of them")
    return problems


def panel_targets(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(panel title, target) for every target of one dashboard, rows included."""
    found: list[tuple[str, dict[str, Any]]] = []

    def walk(panels: Iterable[dict[str, Any]]) -> None:
        for panel in panels:
            found.extend((str(panel.get("title")), target) for target in panel.get("targets", []))
            walk(panel.get("panels", []))

    walk(json.loads(path.read_text()).get("panels", []))
    return found
