"""Peers on this host, as the kernel tells them: who holds the far end of a TCP connection
made here, and which addresses are this host's own.

A peer address says where a connection came from, not who made it: on one host every process
can send from 127.0.0.1, or from any of the host's addresses (``bind`` before ``connect``). The
kernel knows the owner of each socket; Linux's ``sock_diag`` netlink interface (what ``ss``
uses) looks one up by its exact address pair in one round trip, without reading the whole
socket table as ``/proc/net/tcp`` would (its cost grows with every open connection).

The answer is the uid the far socket was created under, or None when no process holds such a
socket in this network namespace: none exists (the peer is another host, or left), or only its
remains do (``TIME_WAIT``/``FIN_WAIT2`` after its owner closed it: the kernel reports uid 0
there, which must not read as root). ``address_is_local`` says which of those None means.

``local_networks`` lists every address a process here may send from (``/proc/net/fib_trie``'s
local routes, the whole of 127.0.0.0/8 included, and ``/proc/net/if_inet6``): read once, at
start-up, to judge a configuration.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from pathlib import Path

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
_NLMSG = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
# inet_diag_req_v2: family, protocol, ext, pad, states; then inet_diag_sockid: sport, dport
# (big-endian), src[16], dst[16], interface, cookie[2]
_REQ = struct.Struct("=BBBBI")
_ENDS = struct.Struct(">HH16s16s")
_REST = struct.Struct("=III")  # interface (0: any), cookie: INET_DIAG_NOCOOKIE, whichever
_NO_COOKIE = 0xFFFFFFFF
# inet_diag_msg: family, state, timer, retrans, sockid, expires, rqueue, wqueue, uid, inode
_MSG = struct.Struct("=BBBB48sIIIII")
_LISTEN, _TIME_WAIT = 10, 6
AVAILABLE = hasattr(socket, "AF_NETLINK")

Address = tuple[str, int]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_LOOPBACK: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"),
                                  ipaddress.ip_network("::1/128"))


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``host`` as an address, IPv4-mapped IPv6 as the IPv4 address it is."""
    addr = ipaddress.ip_address(host.partition("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _packed(host: str) -> tuple[int, bytes]:
    """(family, 16-byte address) as sock_diag wants them."""
    addr = _address(host)
    if isinstance(addr, ipaddress.IPv4Address):
        return socket.AF_INET, addr.packed + bytes(12)
    return socket.AF_INET6, addr.packed


def owner_uid(far: Address, near: Address) -> int | None:
    """The uid owning the socket at ``far`` connected to ``near`` (this process's end of the
    connection), when a process on this host holds it; else None (see the module doc)."""
    family, far_addr = _packed(far[0])
    near_family, near_addr = _packed(near[0])
    if family != near_family:
        return None
    body = (_REQ.pack(family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF)
            + _ENDS.pack(far[1], near[1], far_addr, near_addr)
            + _REST.pack(0, _NO_COOKIE, _NO_COOKIE))
    request = _NLMSG.pack(_NLMSG.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
        nl.sendto(request + body, (0, 0))
        # The kernel answers an exact lookup while handling the send: nothing to wait for.
        try:
            reply = nl.recv(8192, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None
    if len(reply) < _NLMSG.size:
        return None
    _, kind, _, _, _ = _NLMSG.unpack_from(reply)
    if kind == NLMSG_ERROR:
        (code,) = struct.unpack_from("=i", reply, _NLMSG.size)
        if code in (0, -errno.ENOENT):
            return None
        raise OSError(-code, f"sock_diag: {errno.errorcode.get(-code, code)}")
    if kind != SOCK_DIAG_BY_FAMILY or len(reply) < _NLMSG.size + _MSG.size:
        return None
    _, state, _, _, raw_id, _, _, _, uid, inode = _MSG.unpack_from(reply, _NLMSG.size)
    _, dport, _, dst = _ENDS.unpack_from(raw_id)
    # A listener on the far address answers a lookup that finds no connection: not it.
    if state in (_LISTEN, _TIME_WAIT) or inode == 0 or (dport, dst) != (near[1], near_addr):
        return None
    return int(uid)


def address_is_local(host: str) -> bool:
    """Whether ``host`` is one of this network namespace's own addresses (a process here can
    send from it): it can be bound."""
    addr = _address(host)
    family = socket.AF_INET if isinstance(addr, ipaddress.IPv4Address) else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((str(addr), 0))
        except OSError:
            return False
    return True


def local_networks(proc: Path = Path("/proc/net")) -> tuple[Network, ...]:
    """Every network a process on this host can send from. Raises OSError where the kernel
    does not say (no ``/proc``): nothing here can then be judged."""
    found: list[Network] = list(_LOOPBACK)
    prefix = ""
    for line in (proc / "fib_trie").read_text().splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "|--":
            prefix = words[1]
        elif len(words) == 3 and words[1:] == ["host", "LOCAL"] and prefix:
            found.append(ipaddress.ip_network(f"{prefix}{words[0]}", strict=False))
    inet6 = proc / "if_inet6"
    if inet6.exists():  # no IPv6 in this kernel: no IPv6 addresses either
        for line in inet6.read_text().splitlines():
            if words := line.split():
                found.append(ipaddress.ip_network(bytes.fromhex(words[0])))
    return tuple(dict.fromkeys(found))
