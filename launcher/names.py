"""Hatchery's object names, so hatchway's objects are the ones Hatchery would have made."""

from __future__ import annotations

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


def escape(user: str) -> str:
    """Escape a user name as Hatchery does: every character outside ``[a-z0-9]`` becomes
    ``-`` followed by its code point in hex, Go's ``%2x`` (``a@b.c`` → ``a-40b-2ec``)."""
    return "".join(ch if ch in _SAFE else f"-{ord(ch):2x}" for ch in user)


def pod_name(user: str) -> str:
    return f"hatchery-{escape(user)}"


def service_name(user: str) -> str:
    return f"h-{escape(user)}-s"


def claim_name(user: str) -> str:
    return f"claim-{escape(user)}"


def app_label(user: str) -> str:
    return f"hatchery-{escape(user)}"
