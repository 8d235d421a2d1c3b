"""Value parsers for environment variables.

Each parser takes the raw string and returns the typed value or raises
``InvalidValueError`` whose message says what was expected; ``settings`` adds the
variable's name and value (unless the variable is secret).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable
from ipaddress import IPv4Network, IPv6Network, ip_network
from urllib.parse import unquote, urlsplit


class InvalidValueError(ValueError):
    """The text of an environment variable is not what its parser accepts."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise InvalidValueError("true or false")


def int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise InvalidValueError(f"a whole number from {low} to {high}") from None
        if not low <= value <= high:
            raise InvalidValueError(f"a whole number from {low} to {high}")
        return value

    return parse


def float_between(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise InvalidValueError(f"a number between {low:g} and {high:g}") from None
        if not low <= value <= high:  # also rejects NaN
            raise InvalidValueError(f"a number between {low:g} and {high:g}")
        return value

    return parse


def one_of(*choices: str) -> Callable[[str], str]:
    allowed = frozenset(choices)

    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise InvalidValueError("one of " + ", ".join(choices))
        return value

    return parse


def list_of(*choices: str) -> Callable[[str], tuple[str, ...]]:
    """A comma-separated list drawn from ``choices``; ``none`` means empty."""
    allowed = frozenset(choices) | {"none"}

    def parse(text: str) -> tuple[str, ...]:
        items = tuple(dict.fromkeys(i.strip().lower() for i in text.split(",") if i.strip()))
        if not items or any(i not in allowed for i in items):
            raise InvalidValueError("a comma-separated list of " + ", ".join((*choices, "none")))
        if "none" in items:
            if len(items) > 1:
                raise InvalidValueError("'none' alone or a list of " + ", ".join(choices))
            return ()
        return items

    return parse


def parse_text(text: str) -> str:
    value = text.strip()
    if not value:
        raise InvalidValueError("a non-empty text")
    return value


def parse_header_name(text: str) -> str:
    """An HTTP header name, or empty to switch the header off."""
    value = text.strip().lower()
    if value and not re.fullmatch(r"[!#$%&'*+.^_`|~0-9a-z-]+", value):
        raise InvalidValueError("an HTTP header name (letters, digits, '-') or empty")
    return value


def parse_url(text: str) -> str:
    value = text.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidValueError("an http:// or https:// URL")
    try:
        port = parts.port  # raises on a port that is not a number in 0-65535
    except ValueError:
        port = 0
    # "http://host:" has no port at all: the exporter would quietly use the scheme's default.
    if port == 0 or parts.netloc.endswith(":"):
        raise InvalidValueError("an http:// or https:// URL with a valid port (1-65535) after ':'")
    return value


def parse_host(text: str) -> str:
    value = text.strip()
    if not value or any(c in value for c in "/ ?#"):
        raise InvalidValueError("a host name or IP address to bind")
    return value


def parse_key_values(text: str) -> dict[str, str]:
    """W3C-baggage-like ``k=v,k2=v2`` with percent-decoding (OTLP headers, resource)."""
    result: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = unquote(key.strip())
        if not sep or not key:
            raise InvalidValueError("comma-separated key=value pairs")
        result[key] = unquote(value.strip())
    return result


def parse_patterns(text: str) -> tuple[str, ...]:
    """A comma-separated list of regular expressions."""
    patterns = tuple(i.strip() for i in text.split(",") if i.strip())
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error:
            raise InvalidValueError("comma-separated regular expressions") from None
    return patterns


def parse_buckets(text: str) -> tuple[float, ...]:
    expected = "comma-separated increasing positive numbers"
    try:
        values = tuple(float(i) for i in text.split(",") if i.strip())
    except ValueError:
        raise InvalidValueError(expected) from None
    if not values or not _increasing(values) or values[0] < 0:
        raise InvalidValueError(expected)
    return values


def _increasing(values: Iterable[float]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


def parse_networks(text: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """Comma-separated IP addresses or CIDR networks."""
    networks = []
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ip_network(item, strict=False))
        except ValueError:
            raise InvalidValueError("comma-separated IP addresses or CIDR networks") from None
    return tuple(networks)
