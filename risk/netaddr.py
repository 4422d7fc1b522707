"""Client addresses: parsing, the counting key (IPv6 per /64), CIDR lists, and X-Forwarded-For from trusted
proxies only (anyone can send the header; only a proxy we run may be believed)."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_ip(text: str) -> Address:
    """A single address; IPv4-mapped IPv6 becomes IPv4. Raises ValueError for anything else."""
    text = text.strip()
    if not text or len(text) > 64:
        raise ValueError("not an IP address")
    addr = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@functools.lru_cache(maxsize=65_536)  # the same customers' addresses come back check after check
def ip_key(text: str) -> str:
    """What the limits count: the address for IPv4, its /64 for IPv6 (one customer usually holds a whole /64)."""
    addr = parse_ip(text)
    if isinstance(addr, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((int(addr) >> 64 << 64, 64)))
    return str(addr)


def parse_networks(values: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(v.strip(), strict=False) for v in values]


def in_networks(text: str, networks: list[Network]) -> bool:
    if not text or not networks:
        return False
    try:
        addr = parse_ip(text)
    except ValueError:
        return False
    return any(addr.version == net.version and addr in net for net in networks)


def client_ip(peer: str, forwarded_for: str, trusted_proxies: list[Network]) -> str:
    """The customer's address: the peer, unless the peer is a trusted proxy; then walk X-Forwarded-For from the
    right past our own proxies to the first address we did not add.  Malformed entries stop the walk."""
    try:
        current = str(parse_ip(peer))
    except ValueError:
        return ""
    if not in_networks(current, trusted_proxies):
        return current
    for hop in reversed([h for h in forwarded_for.split(",") if h.strip()]):
        try:
            addr = str(parse_ip(hop))
        except ValueError:
            return current
        current = addr
        if not in_networks(addr, trusted_proxies):
            return addr
    return current
