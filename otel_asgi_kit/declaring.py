"""How a setting is declared (``setting``, ``group``) and read from an environment mapping (``Reader``).

A setting is a dataclass field whose metadata holds its ``Var``: the
environment variable's name, default, parser and one-line doc. A group is a
field holding another such dataclass whose names and docs are templates
(``OTEL_EXPORTER_OTLP_{SIGNAL}_ENDPOINT``). ``walk`` lists every variable;
``Reader.build`` reads them all into an instance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from otel_asgi_kit import parsers as p

T = TypeVar("T")
Source = Literal["default", "kit default", "env", "rejected"]
_VAR = "otel_asgi_kit.var"
_GROUP = "otel_asgi_kit.group"


@dataclass(frozen=True)
class Var(Generic[T]):
    name: str
    default: str
    parse: Callable[[str], T]
    doc: str
    kit_default: bool = False  # the kit's default differs from the OTel spec's
    secret: bool = False
    optional: bool = False  # no default of its own: unset means None
    empty_ok: bool = False  # an empty value is meaningful (switches something off)

    def formatted(self, params: Mapping[str, str]) -> Var[T]:
        return dataclasses.replace(
            self,
            name=self.name.format(**params),
            default=self.default.format(**params),
            doc=self.doc.format(**params),
        )


def setting(
    name: str,
    default: str,
    parse: Callable[[str], Any],
    doc: str,
    *,
    kit_default: bool = False,
    secret: bool = False,
    optional: bool = False,
    empty_ok: bool = False,
) -> Any:
    """A ``Settings`` field read from the environment variable ``name``."""
    var = Var(name, default, parse, doc, kit_default, secret, optional, empty_ok)
    return field(metadata={_VAR: var}, repr=not secret)


def group(cls: type[Any], **params: str) -> Any:
    """A field holding a ``cls`` instance whose ``setting`` names and docs are templates of ``params``."""
    return field(metadata={_GROUP: (cls, params)})


def extra_patterns(defaults: str | tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """Regexes added to the kit's own list (``defaults``), which always applies."""
    base = p.parse_patterns(defaults) if isinstance(defaults, str) else defaults

    def parse(text: str) -> tuple[str, ...]:
        return base + p.parse_patterns(text)

    return parse


def _declared(cls: type[Any], params: Mapping[str, str]) -> Iterator[tuple[str, Var[Any] | None, Any]]:
    """(field name, its variable or None, the group's (class, params) or None) for each declared field."""
    for f in dataclasses.fields(cls):
        if _VAR in f.metadata:
            yield f.name, f.metadata[_VAR].formatted(params), None
        elif _GROUP in f.metadata:
            yield f.name, None, f.metadata[_GROUP]


def walk(cls: type[Any], params: Mapping[str, str] | None = None) -> Iterator[Var[Any]]:
    """Every variable declared on ``cls`` and its groups, in declaration order."""
    for _, var, nested in _declared(cls, params or {}):
        if var is not None:
            yield var
        else:
            kind, group_params = nested
            yield from walk(kind, group_params)


def var_of(cls: type[Any], field_name: str) -> Var[Any]:
    for f in dataclasses.fields(cls):
        if f.name == field_name and _VAR in f.metadata:
            return f.metadata[_VAR]  # type: ignore[no-any-return]
    raise KeyError(field_name)


class Reader:
    """Reads variables from one mapping, collecting a line per bad value."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []
        self.sources: dict[str, Source] = {}
        self.rejected: dict[str, str] = {}

    def get(self, var: Var[T]) -> T | None:
        raw = self.environ.get(var.name)
        if raw is not None and (raw.strip() or var.empty_ok):
            try:
                value = var.parse(raw)
            except p.InvalidValueError as exc:
                shown = "<hidden>" if var.secret else repr(raw)
                if var.optional:
                    used = "ignoring it"
                else:
                    used = "using " + (f"the default {var.default!r}" if var.default else "the default")
                self.problems.append(f"{var.name}={shown} is not {exc.expected}; {used}")
                self.rejected[var.name] = shown
                self.sources[var.name] = "rejected"
            else:
                self.sources[var.name] = "env"
                return value
        else:
            self.sources[var.name] = "kit default" if var.kit_default else "default"
        return None if var.optional else var.parse(var.default)

    def build(self, cls: type[T], params: Mapping[str, str] | None = None) -> T:
        """An instance of ``cls`` with every declared field read; undeclared fields keep their defaults."""
        values: dict[str, Any] = {}
        for name, var, nested in _declared(cls, params or {}):
            if var is not None:
                values[name] = self.get(var)
            else:
                kind, group_params = nested
                values[name] = self.build(kind, group_params)
        return cls(**values)
