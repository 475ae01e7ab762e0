"""Identity as Gen3's revproxy delivers it: the ``REMOTE_USER`` header, believed only from a
configured trusted peer (``trusted_proxies``: the revproxy's, the reaper's addresses).

The stock revproxy checks the Fence session and Arborist's ``/workspace`` access before it
passes a request on with ``REMOTE_USER``; the hatchery-reaper sends ``REMOTE_USER`` alone. From
any other peer the header means nothing: it is ignored here and stripped before a workspace
sees it (``proxy.relay.headers``). The name is HTML-escaped as Hatchery escapes it (Go's
``html.EscapeString``), so users, pods and pay models are named as Hatchery names them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

from launcher.errors import ConfigError
from launcher.names import hatchery_user

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

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


def peer_trusted(request: web.Request, nets: tuple[Network, ...]) -> bool:
    """Whether the TCP peer (never a forwarded-for header) is one of ``nets``."""
    if not nets or request.transport is None:
        return False
    peer = request.transport.get_extra_info("peername")
    return bool(peer) and address_trusted(str(peer[0]), nets)


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


class Ambiguous(Exception):
    """A trusted peer sent more than one ``REMOTE_USER``: which one it meant is unknowable."""


def trusted_user(request: web.Request, nets: tuple[Network, ...]) -> str | None:
    """The escaped ``REMOTE_USER`` of a trusted peer's request; None when the peer is not
    trusted or sends no (or an empty) name."""
    if not nets:
        return None
    values = request.headers.getall("REMOTE_USER", ())
    if not values or not peer_trusted(request, nets):
        return None
    if len(values) > 1:
        raise Ambiguous("more than one REMOTE_USER header")
    user = values[0].strip()
    return hatchery_user(user) if user else None
