"""An option's ``authz`` block, read and evaluated as Hatchery's authz.go does.

The block is flat: ``{"version": 0.1, "resource_paths": [...]}``, or ``"pay_models"``, or
``"and"``/``"or"`` lists of such rules (one level deep). A block without ``version`` is a
config error, as in Hatchery. hatchway parts from Hatchery only to fail closed: a version other
than 0.1 (Hatchery refuses to start; ``0`` would even open the option to everyone) makes the
option never offered, and a nested rule Hatchery would trip over (neither key: Hatchery answers
500; both keys: Hatchery reads only ``resource_paths``) denies, or needs both. Each of those is
named in ``problems`` for the start-up warning.

Evaluation takes two callables so this module needs nothing from the proxy: ``may_access``
asks Arborist about resource paths (one ``/auth/request`` carrying every path of the rule: all
must be allowed), ``pay_model`` names the user's current pay model (``None``: none, which
Hatchery calls ``"None"``). With no pay-model source at all a ``pay_models`` rule is false.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .gojson import AUTHZ_RULE, GoDecodeError, authz_parts, float32, marshal, struct_fields

MayAccess = Callable[[list[str]], Awaitable[bool]]
PayModelName = Callable[[], Awaitable[str | None]]
NO_PAY_MODEL = "None"  # Hatchery's name for "no pay model" (blanket billing) in pay_models
_KEYS = ("and", "or", "resource_paths", "pay_models")


@dataclass(frozen=True)
class Rule:
    """One ``AuthzVersion_0_1`` level: exactly one of the four is non-empty at the top."""

    all_of: tuple[Rule, ...] = ()
    any_of: tuple[Rule, ...] = ()
    resource_paths: tuple[str, ...] = ()
    pay_models: tuple[str, ...] = ()

    async def allows(self, may_access: MayAccess, pay_model: PayModelName | None) -> bool:
        if self.any_of:
            for rule in self.any_of:
                if await rule.allows(may_access, pay_model):
                    return True
            return False
        if self.all_of:
            for rule in self.all_of:
                if not await rule.allows(may_access, pay_model):
                    return False
            return True
        if not self.resource_paths and not self.pay_models:
            return False  # an empty rule grants nothing
        if self.resource_paths and not await may_access(list(self.resource_paths)):
            return False
        if self.pay_models:
            if pay_model is None:
                return False  # no pay-model source: fail closed
            current = await pay_model()
            return (current if current is not None else NO_PAY_MODEL) in self.pay_models
        return True


@dataclass(frozen=True)
class Authz:
    """An option's authorization: ``rule`` None and ``offered`` True is open to everyone."""

    rule: Rule | None = None
    offered: bool = True
    problems: tuple[str, ...] = field(default=())

    async def allows(self, may_access: MayAccess, pay_model: PayModelName | None) -> bool:
        if not self.offered:
            return False
        if self.rule is None:
            return True
        return await self.rule.allows(may_access, pay_model)


OPEN = Authz()


def _rule(doc: Mapping[str, Any]) -> Rule:
    """The decoded rule (Go's view: keys matched ignoring case, null lists as empty)."""
    got = {f.key: v for f, v in struct_fields(AUTHZ_RULE, doc)}

    def rules(key: str) -> tuple[Rule, ...]:
        return tuple(_rule(r or {}) for r in got[key] or [])

    return Rule(all_of=rules("and"), any_of=rules("or"),
                resource_paths=tuple(got["resource_paths"] or ()),
                pay_models=tuple(got["pay_models"] or ()))


def _present(rule: Rule) -> list[str]:
    values: Sequence[Sequence[Any]] = (rule.all_of, rule.any_of, rule.resource_paths,
                                       rule.pay_models)
    return [k for k, v in zip(_KEYS, values, strict=True) if v]


def parse_authz(value: Any, *, source: str, where: str, name: str) -> Authz:
    """Read one container's ``authz`` (absent: OPEN). Raises ConfigError where Hatchery's
    ``ValidateAuthzConfig`` refuses the block, except for unknown versions (never offered)."""
    if value is None:
        return OPEN
    try:
        version, doc = authz_parts(value, where)
    except GoDecodeError as exc:
        raise ConfigError(source, exc.path, exc.expected, exc.got) from None
    try:
        marshal(AUTHZ_RULE, doc)  # Go's type checks on the rule lists
    except GoDecodeError as exc:
        raise ConfigError(source, f"{where}.{exc.path}", exc.expected, exc.got) from None
    if version != float32(0.1):
        return Authz(offered=False, problems=(
            f"{name!r}: authz version {value.get('version')!r} is not 0.1, the only one "
            "hatchway knows: never offered",))
    rule = _rule(doc)
    present = _present(rule)
    if len(present) != 1:
        raise ConfigError(source, where, "exactly one of 'and', 'or', 'resource_paths', "
                          "'pay_models' with a non-empty value", present)
    problems: list[str] = []
    for i, inner in enumerate(rule.all_of + rule.any_of):
        if inner.all_of or inner.any_of:
            raise ConfigError(source, where, "rules nested one level only (Hatchery does not "
                              "support 'and'/'or' inside 'and'/'or')", f"rule {i}")
        keys = _present(inner)
        if not keys:
            problems.append(f"{name!r}: authz rule {i} names neither resource_paths nor "
                            "pay_models: it grants nothing")
        elif len(keys) == 2:
            problems.append(f"{name!r}: authz rule {i} names both resource_paths and "
                            "pay_models: both must pass (Hatchery reads only resource_paths)")
    return Authz(rule=rule, problems=tuple(problems))
