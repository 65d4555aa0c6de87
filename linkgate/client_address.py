"""Who the client is, for throttling and session records: the peer address, or, only when
the peer is a trusted proxy (``LINKGATE_TRUSTED_PROXIES``), the right-most address in
``X-Forwarded-For`` that is not itself a trusted proxy.

Right-most, because each proxy appends the address it received the request from: the entries
a client wrote itself come first and can be anything, while the ones our proxies appended
are true. With no trusted proxies configured the header is ignored, so it cannot be spoofed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=16)
def trusted_networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def _parse(value: str) -> IPAddress | None:
    text = value.strip().strip('"')
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.9:51000"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in networks)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Sequence[str]
) -> str:
    """The client's address as text; ``forwarded_for`` is every X-Forwarded-For header line."""
    peer_address = _parse(peer or "")
    if peer_address is None:
        return peer or "unknown"
    networks = trusted_networks(tuple(trusted_proxies))
    if not networks or not _trusted(peer_address, networks):
        return str(peer_address)
    hops = [hop for line in forwarded_for for hop in line.split(",")]
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            # Garbage where an address should be: whoever wrote it is the client, and it is
            # the nearest hop we cannot vouch for; the proxy before it is the best we know.
            break
        if not _trusted(address, networks):
            return str(address)
        peer_address = address
    return str(peer_address)
