"""The route table: user → where that user's workspace answers.

Backends write it (the local backend when a process is ready, the Kubernetes backend from its
Service watch); the relay only reads it, with one dict lookup per request. Listeners (the Envoy
config writer) are told after each change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Route:
    """Where one user's workspace is reachable.

    ``rewrite`` is the path prefix the workspace expects in place of the proxy prefix
    (Hatchery's ``path-rewrite``; ``/`` when empty), as Ambassador's Mapping ``rewrite``.
    ``ready`` is False while the workspace is launching: the relay answers 503 then.
    """

    host: str
    port: int
    rewrite: str = "/"
    ready: bool = True
    tls: bool = False
    source: str = ""  # who published it ("local", "service/h-alice-s", "ambassador/...")
    # An Authorization value the relay sends the workspace in place of the client's: the
    # local backend's per-workspace secret, so that only the gateway can use a workspace's
    # port (other users' processes share the loopback network). Empty: none (pods).
    auth: str = ""
    # ``auth`` as the bytes the fast path writes, made once per route, not once per request
    auth_bytes: bytes = field(default=b"", init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "auth_bytes", self.auth.encode("latin-1"))


Listener = Callable[[], None]


class RouteTable:
    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}
        self._listeners: list[Listener] = []

    def get(self, user: str) -> Route | None:
        return self._routes.get(user)

    def set(self, user: str, route: Route) -> None:
        if self._routes.get(user) != route:
            self._routes[user] = route
            self._changed()

    def remove(self, user: str) -> None:
        if self._routes.pop(user, None) is not None:
            self._changed()

    def replace_all(self, routes: dict[str, Route], source_prefix: str = "") -> None:
        """Swap in a fresh view (after a re-list): routes whose ``source`` starts with
        ``source_prefix`` and are absent from ``routes`` are dropped."""
        kept = {u: r for u, r in self._routes.items() if not r.source.startswith(source_prefix)}
        kept.update(routes)
        if kept != self._routes:
            self._routes = kept
            self._changed()

    def items(self) -> Iterator[tuple[str, Route]]:
        return iter(list(self._routes.items()))

    def __len__(self) -> int:
        return len(self._routes)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()
