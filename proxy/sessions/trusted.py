"""Identity as Gen3's revproxy delivers it: the ``REMOTE_USER`` header, believed only from a
trusted peer (``trusted_proxies``: the revproxy's, the reaper's addresses).

The stock revproxy checks the Fence session and Arborist's ``/workspace`` access before it
passes a request on with ``REMOTE_USER``; the hatchery-reaper sends ``REMOTE_USER`` alone. From
any other peer the header means nothing: it is ignored here and stripped before a workspace
sees it (``proxy.relay.headers``). The name is HTML-escaped as Hatchery escapes it (Go's
``html.EscapeString``), so users, pods and pay models are named as Hatchery names them.

A trusted address alone is not a trusted peer where workspaces run on this host (the local
backend): they share its network, and any process here may send from 127.0.0.1 or from any
other address of the host (``bind`` before ``connect``). So a connection from a trusted address
that a process on this host made is trusted only when the kernel names its owner and that owner
is no workspace: local workspaces run as uids of their own from ``local.first_uid`` when
hatchway is root (``launcher.isolation``). Not root, they run as hatchway's own uid and no line
can be drawn: trusting any of this host's addresses is then refused at start-up. Pods have
network namespaces of their own: on Kubernetes the address is the peer (NetworkPolicy decides
who may reach hatchway, ``deploy/networkpolicy.yaml``).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterable
from typing import Any
from weakref import WeakKeyDictionary

from aiohttp import web

from launcher.errors import ConfigError
from launcher.names import hatchery_user

from . import local_peers
from .local_peers import Network

POD_ISOLATION, SHARED_ISOLATION = "pods", "shared"  # launcher.backend.Backend.isolation


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """``trusted_proxies`` as networks; a wrong entry stops start-up naming it."""
    nets = []
    for i, value in enumerate(values):
        try:
            nets.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ConfigError("settings", f"trusted_proxies[{i}]",
                              "an IP address or CIDR such as 10.0.0.0/8", value) from None
    return tuple(nets)


def address_trusted(host: str, nets: tuple[Network, ...]) -> bool:
    """Whether the peer address ``host`` is one of ``nets`` (IPv4-mapped IPv6 as IPv4)."""
    if not nets:
        return False
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in nets)


class TrustedPeers:
    """Whose ``REMOTE_USER`` is believed: a TCP peer (never a forwarded-for header) at one of
    ``nets``, and, when ``first_workspace_uid`` is set (local workspaces here), whose socket,
    if a process on this host holds it, is owned by a uid below it. Decided once per
    connection: the kernel is asked only for peers at a trusted address, and only on their
    connection's first question."""

    __slots__ = ("nets", "first_workspace_uid", "_decided")

    def __init__(self, nets: tuple[Network, ...] = (), *,
                 first_workspace_uid: int | None = None) -> None:
        self.nets = nets
        self.first_workspace_uid = first_workspace_uid
        self._decided: WeakKeyDictionary[asyncio.BaseTransport, bool] = WeakKeyDictionary()

    def __bool__(self) -> bool:
        return bool(self.nets)

    def trusts(self, transport: asyncio.BaseTransport | None, peer: Any = None) -> bool:
        """Whether the peer on this connection is trusted (the fast path asks on accept, and
        aiohttp, serving the same connection after a handoff, gets the same answer).
        ``peer``: the transport's ``peername``, when the caller has it already."""
        if not self.nets or transport is None:
            return False
        if peer is None:
            peer = transport.get_extra_info("peername")
        if not peer or not address_trusted(str(peer[0]), self.nets):
            return False
        if self.first_workspace_uid is None:
            return True
        decided = self._decided.get(transport)
        if decided is None:
            decided = self._decided[transport] = self._no_workspace(
                peer, transport.get_extra_info("sockname"))
        return decided

    def _no_workspace(self, peer: tuple[str, int], near: tuple[str, int] | None) -> bool:
        """Whether no workspace is at the far end of this connection: made from another host,
        or by a process of this host whose uid is not a workspace's."""
        if not near:
            return False
        try:
            uid = local_peers.owner_uid((str(peer[0]), int(peer[1])),
                                        (str(near[0]), int(near[1])))
        except OSError:  # the kernel would not say: nothing to trust
            return False
        if uid is None:  # no process here holds it: another host's, unless it left
            return not local_peers.address_is_local(str(peer[0]))
        assert self.first_workspace_uid is not None
        return uid < self.first_workspace_uid


def trusted_peers(values: Iterable[str], *, isolation: str,
                  first_workspace_uid: int) -> TrustedPeers:
    """``trusted_proxies`` as the gateway applies them beside a backend whose workspaces are
    kept apart as ``isolation`` says (``Backend.isolation``); raises ConfigError when a
    workspace could send from a trusted address as a peer no check tells from a trusted one."""
    nets = parse_networks(values)
    if not nets or isolation == POD_ISOLATION:
        return TrustedPeers(nets)
    if isolation != SHARED_ISOLATION and local_peers.AVAILABLE:
        return TrustedPeers(nets, first_workspace_uid=first_workspace_uid)
    try:
        here = local_peers.local_networks()
    except OSError as exc:
        raise ConfigError("settings", "trusted_proxies", "no trusted peers with the local "
                          f"backend on a host whose addresses cannot be listed ({exc})",
                          list(values)) from None
    for i, net in enumerate(nets):
        if any(net.overlaps(mine) for mine in here if net.version == mine.version):
            raise ConfigError(
                "settings", f"trusted_proxies[{i}]",
                "addresses of other hosts only: local workspaces run as hatchway's own uid "
                "(it is not root), so one sending from this host's address could not be told "
                "from the trusted peer and would act as any user it names in REMOTE_USER. "
                "List only the revproxy's and reaper's addresses on other hosts, or run "
                "hatchway as root so that each workspace runs as a uid of its own", str(net))
    return TrustedPeers(nets)


class Ambiguous(Exception):
    """A trusted peer sent more than one ``REMOTE_USER``: which one it meant is unknowable."""


def trusted_user(request: web.Request, peers: TrustedPeers) -> str | None:
    """The escaped ``REMOTE_USER`` of a trusted peer's request; None when the peer is not
    trusted or sends no (or an empty) name."""
    if not peers:
        return None
    values = request.headers.getall("REMOTE_USER", ())
    if not values or not peers.trusts(request.transport):
        return None
    if len(values) > 1:
        raise Ambiguous("more than one REMOTE_USER header")
    user = values[0].strip()
    return hatchery_user(user) if user else None
