"""IP addresses kept as strings: checked, spelled and ordered with inet_pton/inet_ntop.

The modules handle one address or more per peer, thousands in a run: ipaddress objects cost
tens of milliseconds per thousand, inet_pton a fraction of one. The spelling is inet_ntop's,
the one netlink dumps (pyroute2, iproute2) and iptables-save print.
"""

from __future__ import annotations

import functools
import socket


def is_ipv6(address: str) -> bool:
    """Whether ``address`` is IPv6, read from its text (IPv6 text alone holds a colon): no
    parsing, for an address already checked (``field``, ``spelled``)."""
    return ":" in address


def packed(address: str) -> bytes:
    """4 or 16 bytes in network order; ValueError when ``address`` is not an IP address."""
    try:
        return socket.inet_pton(socket.AF_INET6 if is_ipv6(address) else socket.AF_INET, address)
    except (OSError, TypeError, ValueError):
        raise ValueError(f"{address!r} is not an IP address") from None


def field(label: str, value, error: type[Exception] = ValueError) -> str:
    """A declared address ``value`` spelled as the kernel spells it; ``error`` naming the field
    ``label`` when it is no IP address."""
    try:
        return spelled(str(value))
    except ValueError:
        raise error(f"{label}: {value!r} is not an IP address") from None


def version(address: str) -> int:
    return 4 if len(packed(address)) == 4 else 6


def family(address: str) -> int:
    """The address family netlink messages carry for ``address``: AF_INET or AF_INET6."""
    return socket.AF_INET if version(address) == 4 else socket.AF_INET6


@functools.lru_cache(maxsize=4096)  # a run spells each peer's address at every use
def spelled(address: str) -> str:
    """``address`` as the kernel's tools spell it (``2001:DB8:0::1`` -> ``2001:db8::1``)."""
    return text(packed(address))


def text(raw) -> str:
    """A 4- or 16-byte address (from netlink, say) as inet_ntop writes it."""
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


@functools.lru_cache(maxsize=4096)  # a run sorts the same peers' addresses more than once
def key(address: str) -> tuple[int, bytes]:
    """Sort key: IPv4 before IPv6, each in numeric order."""
    raw = packed(address)
    return len(raw), raw
