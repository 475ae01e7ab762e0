"""Hatchery's idle-time limit, one rule for ``/options`` and ``/status``: the first argument
containing ``shutdown_no_activity_timeout=``, the text after its last ``=`` read as Go's
``strconv.Atoi`` reads it, times 1000 (milliseconds)."""

from __future__ import annotations

import re
from collections.abc import Iterable

_ATOI = re.compile(r"[+-]?[0-9]+")
_MARK = "shutdown_no_activity_timeout="


def idle_limit_ms(args: Iterable[str]) -> int | None:
    """The limit the first matching arg gives, or None (no such arg, or it is no integer:
    Hatchery then looks no further in this container)."""
    for arg in args:
        if _MARK in arg:
            value = arg.split("=")[-1]
            return int(value) * 1000 if _ATOI.fullmatch(value) else None
    return None


def option_idle_limit_ms(args: Iterable[str]) -> int:
    """``idle-time-limit`` in ``/options``: the limit, else -1."""
    found = idle_limit_ms(args)
    return -1 if found is None else found


def pod_idle_limit_ms(containers: Iterable[Iterable[str]]) -> int:
    """``idleTimeLimit`` in ``/status`` for a running pod, from each container's args in turn
    (a later container's limit replaces an earlier one, as Hatchery's loop does), else 0."""
    limit = 0
    for args in containers:
        found = idle_limit_ms(args)
        if found is not None:
            limit = found
    return limit
