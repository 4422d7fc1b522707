"""The order API's request signature (both sides: the server verifies, clients and tests sign).

    string_to_sign = METHOD \\n PATH \\n CANONICAL_QUERY \\n hex(SHA256(body)) \\n TIMESTAMP \\n NONCE
    signature      = hex(HMAC-SHA256(secret, string_to_sign))

CANONICAL_QUERY: the query parameters percent-decoded, sorted by name then value, each name and value encoded
again as RFC 3986 unreserved-safe (`quote(safe="-_.~")`), joined `name=value` with `&`; empty without a query.
PATH is the request path as sent, before percent-decoding. Dujiao-Next's open API signs a canonical request the
same way; we add the body hash so a signature covers the exact bytes and a nonce so a replay inside the window
is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

KEY_HEADER = "x-kami-key"
TIMESTAMP_HEADER = "x-kami-timestamp"
NONCE_HEADER = "x-kami-nonce"
SIGNATURE_HEADER = "x-kami-signature"
IDEMPOTENCY_HEADER = "idempotency-key"
#: accepted distance between the request's timestamp and the server's clock
WINDOW_S = 300


def canonical_query(raw_query: str) -> str:
    if not raw_query:
        return ""  # most requests (every POST): no parsing
    pairs = sorted(parse_qsl(raw_query, keep_blank_values=True))
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in pairs)


def string_to_sign(method: str, path: str, raw_query: str, body: bytes, timestamp: str, nonce: str) -> bytes:
    return "\n".join((method.upper(), path, canonical_query(raw_query), hashlib.sha256(body).hexdigest(),
                      timestamp, nonce)).encode()


def sign(secret: str, method: str, path: str, raw_query: str, body: bytes, timestamp: str, nonce: str) -> str:
    return hmac.digest(secret.encode(), string_to_sign(method, path, raw_query, body, timestamp, nonce), "sha256").hex()


def matches(secret: str, signature: str, method: str, path: str, raw_query: str, body: bytes, timestamp: str,
            nonce: str) -> bool:
    expected = sign(secret, method, path, raw_query, body, timestamp, nonce)
    return hmac.compare_digest(expected.encode(), signature.strip().lower().encode())


@dataclass(frozen=True)
class Signer:
    """A client's side: the four headers of one request."""

    key_id: str
    secret: str

    def headers(self, method: str, path: str, raw_query: str = "", body: bytes = b"",
                timestamp: int | None = None, nonce: str | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        nonce = nonce or secrets.token_hex(16)
        return {KEY_HEADER: self.key_id, TIMESTAMP_HEADER: ts, NONCE_HEADER: nonce,
                SIGNATURE_HEADER: sign(self.secret, method, path, raw_query, body, ts, nonce)}
