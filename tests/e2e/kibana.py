"""Elasticsearch queries shaped like Kibana Discover's, for the end-to-end tests."""

from __future__ import annotations

import time
import urllib.error
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from tests.infra import services

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    """Call ``probe`` every 0.5 s until it returns something other than None."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not appear within {timeout:.0f}s")
        time.sleep(0.5)


def search(
    es: services.Elasticsearch,
    pattern: str,
    query: dict[str, Any],
    *,
    sort: Sequence[dict[str, Any]] | None = None,
    fields: Sequence[str] = (),
    expect: int | None = None,
    size: int = 500,
) -> Any:
    """``_source`` of the hits, each with ``_fields`` (the ``fields`` API) and ``_sort`` (sort values) added.

    With ``expect``, returns None until exactly that many hits match (for
    ``eventually``); more than ``expect`` fails at once.
    """
    body: dict[str, Any] = {"size": size, "query": query, "track_total_hits": True}
    if sort:
        body["sort"] = list(sort)
    if fields:
        body["fields"] = list(fields)
    try:
        hits = services.http_json("POST", f"{es.url}/{pattern}/_search", body)["hits"]["hits"]
    except urllib.error.HTTPError as exc:
        # 404 until the collector created the first data stream; 503 while
        # its first shard is still starting.
        if exc.code not in (404, 503):
            raise
        hits = []
    docs = [{**hit["_source"], "_fields": hit.get("fields", {}), "_sort": hit.get("sort", [])} for hit in hits]
    if expect is None:
        return docs
    assert len(docs) <= expect, f"{len(docs)} documents in {pattern} for {query}, expected {expect}"
    return docs if len(docs) == expect else None
