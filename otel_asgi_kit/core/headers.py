"""Captured request/response headers as span attributes, with redaction decided once per header name."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from otel_asgi_kit.redaction import REDACTED

# ASGI gives (bytes, bytes) pairs with lowercased names; aiohttp gives str pairs as the client sent them.
HeaderPairs = Iterable[tuple[bytes, bytes]] | Iterable[tuple[str, str]]


class HeaderCapture:
    """Turns configured headers into ``http.{request,response}.header.<name>`` attributes.

    Which names are captured and which are redacted is decided once per header
    name and cached, so a request pays a dict lookup per header.
    """

    def __init__(self, kind: str, patterns: Sequence[str], sanitize: Sequence[str]) -> None:
        self._prefix = f"http.{kind}.header."
        self._capture = re.compile("|".join(f"(?:{p})" for p in patterns), re.I) if patterns else None
        self._sanitize = re.compile("|".join(f"(?:{p})" for p in sanitize), re.I) if sanitize else None
        # name -> (attribute key, redact?), or None when the header is not captured
        self._decisions: dict[bytes | str, tuple[str, bool] | None] = {}
        self.enabled = self._capture is not None  # an attribute, not a property: read for every request

    def _decide(self, name: bytes | str) -> tuple[str, bool] | None:
        text = (name.decode("latin-1") if isinstance(name, bytes) else name).lower()
        decision: tuple[str, bool] | None = None
        if self._capture is not None and self._capture.fullmatch(text):
            redact = bool(self._sanitize and self._sanitize.fullmatch(text))
            decision = (self._prefix + text, redact)
        if len(self._decisions) < 1024:
            self._decisions[name] = decision
        return decision

    def attributes(self, headers: HeaderPairs) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        decisions = self._decisions
        for name, value in headers:
            decision = decisions[name] if name in decisions else self._decide(name)
            if decision is None:
                continue
            key, redact = decision
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            found.setdefault(key, []).append(REDACTED if redact else text)
        return found
