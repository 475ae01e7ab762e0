"""One validator for every section of hatchway's settings.

Each section is a dataclass whose fields are declared with :func:`setting`: the default, a
docstring saying why the default is what it is, and, where a type is not enough, what the value
must satisfy. :func:`build` turns a parsed YAML/JSON mapping into that dataclass, checking every
key once, and raises one error shape for every mistake: :class:`ConfigError` naming the file, the
dotted field and what was expected (the CLI prints it and exits 2). :func:`describe` walks the
same tree for the README's configuration table, so the docs cannot drift from the code.

Supported field types: ``str``, ``int``, ``float``, ``bool``, ``Literal[...]`` (choices),
``list[str]``, ``dict[str, str]``, ``X | None``, and nested setting dataclasses.
"""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .errors import ConfigError

_DOC, _CHECK, _INTERNAL, _WAS = "doc", "check", "internal", "was"
log = logging.getLogger("hatchway.settings")


def setting(default: Any = dataclasses.MISSING, doc: str = "", *,
            factory: Callable[[], Any] | None = None,
            check: tuple[Callable[[Any], bool], str] | None = None,
            was: str | None = None) -> Any:
    """A documented settings field. ``check`` is ``(predicate, expected)``: a value that fails
    the predicate is refused with "expected <expected>". ``was``: the field's former name,
    still read (with a deprecation warning) so operators' files keep working."""
    metadata = {_DOC: doc, _CHECK: check, _WAS: was}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def internal(default: Any = None) -> Any:
    """A field the program fills in (not read from any file): never built, never described."""
    return dataclasses.field(default=default, repr=False, metadata={_INTERNAL: True})


def positive(expected: str = "a positive number") -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v > 0), expected


def non_negative(expected: str = "a number >= 0") -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v >= 0), expected


def port(allow_zero: bool = False) -> tuple[Callable[[Any], bool], str]:
    low = 0 if allow_zero else 1
    return (lambda v: low <= v < 65536), f"a port number {low}-65535"


@dataclass(frozen=True)
class Described:
    """One leaf of the tree, for documentation."""

    path: str
    type: str
    default: Any
    doc: str


def type_name(tp: Any) -> str:
    """What the operator must write, in words ("a number", "one of: a, b")."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of: " + ", ".join(str(a) for a in typing.get_args(tp))
    if origin is list:
        return "a list of strings"
    if origin is dict:
        return "a mapping of strings"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _coerce(source: str, path: str, tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        tp = next(a for a in args if a is not type(None))
        origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(source, path, "a mapping", value)
        return build(tp, value, source=source, prefix=path + ".")  # type: ignore[arg-type]
    if origin is Literal:
        if value not in typing.get_args(tp) or isinstance(value, bool):
            raise ConfigError(source, path, " or ".join(map(str, typing.get_args(tp))), value)
        return value
    if origin is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(source, path, "a list of strings", value)
        return list(value)
    if origin is dict:
        if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ConfigError(source, path, "a mapping of strings to strings", value)
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(source, path, "true or false", value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(source, path, "an integer", value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(source, path, "a number", value)
        return float(value)
    if tp is str and not isinstance(value, str):
        raise ConfigError(source, path, "a string", value)
    return value


def _fields(cls: type) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(cls)
            if f.init and not f.metadata.get(_INTERNAL)}


def _current(known: Mapping[str, dataclasses.Field[Any]], name: str) -> str:
    """The field ``name`` is today: itself, or the field that was once called so."""
    if name in known:
        return name
    return next((f.name for f in known.values() if f.metadata.get(_WAS) == name), name)


def build(cls: type[Any], doc: Mapping[str, Any], *, source: str, prefix: str = "") -> Any:
    """``cls`` from ``doc``: unknown keys, wrong types and failed checks raise ConfigError.
    Keys may be spelled with ``-`` or ``_`` (Hatchery's files use dashes)."""
    hints = typing.get_type_hints(cls)
    known = _fields(cls)
    values: dict[str, Any] = {}
    for key, value in doc.items():
        name = _current(known, str(key).replace("-", "_"))
        f = known.get(name)
        if f is not None and name != str(key).replace("-", "_"):
            log.warning("%s: setting %s%s is now called %s%s; the old name still works but "
                        "will go away", source, prefix, key, prefix, name)
        if f is None:
            raise ConfigError(source, prefix + str(key), "one of " + ", ".join(sorted(known)),
                              "an unknown field")
        coerced = _coerce(source, prefix + str(key), hints[name], value)
        check = f.metadata.get(_CHECK)
        if check is not None and coerced is not None and not check[0](coerced):
            raise ConfigError(source, prefix + str(key), check[1], value)
        values[name] = coerced
    return cls(**values)


def merge(cls: type[Any], into: dict[str, Any], doc: Mapping[str, Any]) -> None:
    """Later layers win key by key: sections (nested dataclasses) and mappings merge rather
    than replace. Only field names are respelled (``-`` → ``_``), never a mapping's own keys
    (a user name in ``static_routes``); unknown keys are left for :func:`build` to refuse."""
    hints = typing.get_type_hints(cls)
    known = _fields(cls)
    for key, value in doc.items():
        k = _current(known, str(key).replace("-", "_"))
        if k not in known:
            into[str(key)] = value
            continue
        tp = hints[k]
        if isinstance(value, Mapping) and dataclasses.is_dataclass(tp):
            if not isinstance(into.get(k), dict):
                into[k] = {}
            merge(tp, into[k], value)  # type: ignore[arg-type]
        elif isinstance(value, Mapping) and isinstance(into.get(k), dict):
            into[k] = {**into[k], **value}
        else:
            into[k] = dict(value) if isinstance(value, Mapping) else value


def describe(cls: type[Any], prefix: str = "") -> Iterator[Described]:
    """Every leaf field of the tree with its type, default and doc, in declaration order."""
    hints = typing.get_type_hints(cls)
    for name, f in _fields(cls).items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            yield from describe(tp, f"{prefix}{name}.")  # type: ignore[arg-type]
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        yield Described(prefix + name, type_name(tp), default, f.metadata.get(_DOC, ""))
