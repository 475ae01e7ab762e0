"""Hatchery's object names, so hatchway's objects are the ones Hatchery would have made.

Hatchery HTML-escapes ``REMOTE_USER`` as it reads it (``html.EscapeString``) and builds every
name from that string, so ``o'brien``'s pod is ``hatchery-o-26-2339-3bbrien``. The functions
here take the user name as the identity carries it (not HTML-escaped) and apply both steps.
"""

from __future__ import annotations

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
# Go's html.EscapeString escapes exactly these five (Python's html.escape writes &#x27; for ').
_HTML = str.maketrans({"&": "&amp;", "'": "&#39;", "<": "&lt;", ">": "&gt;", '"': "&#34;"})


def hatchery_user(user: str) -> str:
    """The user name as Hatchery holds it: Go's ``html.EscapeString(REMOTE_USER)``."""
    return user.translate(_HTML)


def escapism(text: str) -> str:
    """Hatchery's ``escapism``: every character outside ``[a-z0-9]`` becomes ``-`` and its
    code point in hex, Go's ``%2x`` (space-padded to two). Invalid UTF-8, which Python holds
    as lone surrogates, is U+FFFD to Go's ``range``."""
    return "".join(ch if ch in _SAFE else
                   f"-{0xFFFD if 0xD800 <= ord(ch) <= 0xDFFF else ord(ch):2x}" for ch in text)


def escape(user: str) -> str:
    """The escaped user as in Hatchery's object names (``a@b.c`` → ``a-40b-2ec``)."""
    return escapism(hatchery_user(user))


def pod_name(user: str) -> str:
    return f"hatchery-{escape(user)}"


def service_name(user: str) -> str:
    return f"h-{escape(user)}-s"


def claim_name(user: str) -> str:
    return f"claim-{escape(user)}"


def app_label(user: str) -> str:
    return f"hatchery-{escape(user)}"
