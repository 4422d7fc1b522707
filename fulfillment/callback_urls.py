"""Callback URLs given by API clients: http(s) only, and never to a private, loopback, link-local or otherwise
non-public address — the host checked as written and as it resolves (a name pointing at 127.0.0.1 is refused) —
unless the merchant's setting allows private targets (tests, a shop calling its own LAN)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL = 2048


class BadCallbackUrl(ValueError):
    pass


def _public(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return not (addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_multicast
                or addr.is_reserved or addr.is_unspecified or not addr.is_global)


def parse_callback_url(url: str) -> tuple[str, int]:
    """(host, port) of a syntactically acceptable callback URL."""
    if len(url) > MAX_URL or any(c.isspace() or ord(c) < 32 for c in url):
        raise BadCallbackUrl("callback url too long or with spaces")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise BadCallbackUrl("callback url must be http(s)://host/… without credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise BadCallbackUrl("callback url port") from None
    return parts.hostname, port


async def check_callback_url(url: str, allow_private: bool) -> None:
    """Raise BadCallbackUrl unless `url` may be called (resolving its host name)."""
    host, port = parse_callback_url(url)
    if allow_private:
        return
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            raise BadCallbackUrl("callback host does not resolve") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses or not all(_public(a) for a in addresses):
        raise BadCallbackUrl("callback host is not a public address")
