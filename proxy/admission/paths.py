"""Request-target normalisation, done once: the path that is authorised is the path forwarded.

Routing is by the session's user, never by path, so no path can reach another user's workspace;
normalising still matters inside a workspace (``..`` must not climb out of the rewrite prefix)
and keeps hatchway's view identical to the workspace's. Ambiguous spellings are refused rather
than guessed at: an encoded slash or backslash, NUL, and dot segments that climb above the root.
"""

from __future__ import annotations

from urllib.parse import unquote


class PathError(ValueError):
    """The request target is malformed or ambiguous (answered with 400)."""


_DOTS = (".", "..")


def normalize_path(path: str) -> str:
    """Resolve ``.``/``..`` (also percent-encoded), collapse ``//``, refuse ``%2F``, ``%5C``,
    backslashes and NUL. Segments otherwise keep their original (encoded) spelling."""
    if not path.startswith("/"):
        raise PathError("the request path must start with '/'")
    out: list[str] = []
    segments = path[1:].split("/")
    last = len(segments) - 1
    for i, seg in enumerate(segments):
        if "%" in seg:
            try:
                decoded = unquote(seg, errors="strict")
            except UnicodeDecodeError:
                raise PathError("the request path is not valid UTF-8 when decoded") from None
            if "/" in decoded or "\\" in decoded or "\x00" in decoded:
                raise PathError("encoded '/', '\\' or NUL in the request path")
        else:
            decoded = seg
            if "\\" in seg or "\x00" in seg:
                raise PathError("'\\' or NUL in the request path")
        if decoded in _DOTS:
            if decoded == "..":
                if not out:
                    raise PathError("'..' climbs above the root")
                out.pop()
            if i == last:
                out.append("")  # "/a/b/.." → "/a/"
            continue
        if seg == "" and i != last:
            continue  # "//" → "/"
        out.append(seg)
    return "/" + "/".join(out)
