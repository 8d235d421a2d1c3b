"""Header capture with redaction, and the W3C propagation carrier over ASGI headers."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from opentelemetry.propagators.textmap import Getter

from otel_asgi_kit.redaction import REDACTED

RawHeaders = Iterable[tuple[bytes, bytes]]


class AsgiHeaderGetter(Getter[Sequence[tuple[bytes, bytes]]]):
    """Reads ASGI's raw header list; values of repeated headers are kept in order."""

    def get(self, carrier: Sequence[tuple[bytes, bytes]], key: str) -> list[str] | None:
        wanted = key.lower().encode("latin-1")
        values = [v.decode("latin-1") for k, v in carrier if k == wanted]
        if not values:
            return None
        if wanted == b"baggage":
            # The baggage propagator reads only the first value.
            return [",".join(values)]
        return values

    def keys(self, carrier: Sequence[tuple[bytes, bytes]]) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier]


GETTER = AsgiHeaderGetter()


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
        self._decisions: dict[bytes, tuple[str, bool] | None] = {}

    @property
    def enabled(self) -> bool:
        return self._capture is not None

    def _decide(self, name: bytes) -> tuple[str, bool] | None:
        text = name.decode("latin-1").lower()
        decision: tuple[str, bool] | None = None
        if self._capture is not None and self._capture.fullmatch(text):
            redact = bool(self._sanitize and self._sanitize.fullmatch(text))
            decision = (self._prefix + text, redact)
        if len(self._decisions) < 1024:
            self._decisions[name] = decision
        return decision

    def attributes(self, headers: RawHeaders) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        decisions = self._decisions
        for name, value in headers:
            decision = decisions[name] if name in decisions else self._decide(name)
            if decision is None:
                continue
            key, redact = decision
            found.setdefault(key, []).append(REDACTED if redact else value.decode("latin-1"))
        return found
