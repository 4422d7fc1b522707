"""The order API's request signature (fulfillment/api_signing.py): the canonical query and the string to sign are
fixed, so a client in any language can reproduce them; any change of method, path, query, body, time or nonce
breaks the signature."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from fulfillment.api_signing import canonical_query, matches, sign, string_to_sign


def test_canonical_query_sorts_and_reencodes() -> None:
    assert canonical_query("") == ""
    assert canonical_query("b=2&a=1&a=0") == "a=0&a=1&b=2"
    assert canonical_query("q=a+b&z=%7E&x=%E4%B8%AD") == "q=a%20b&x=%E4%B8%AD&z=~"


def test_string_to_sign_is_the_documented_layout() -> None:
    body = b'{"a":1}'
    assert string_to_sign("post", "/api/v1/orders", "b=1", body, "1700000000", "n1") == (
        b"POST\n/api/v1/orders\nb=1\n" + hashlib.sha256(body).hexdigest().encode() + b"\n1700000000\nn1")
    expected = hmac.new(b"s", string_to_sign("POST", "/p", "", body, "1", "n"), hashlib.sha256).hexdigest()
    assert sign("s", "POST", "/p", "", body, "1", "n") == expected


@pytest.mark.parametrize("changed", [("GET", "/p", "", b"{}", "1", "n"), ("POST", "/q", "", b"{}", "1", "n"),
                                     ("POST", "/p", "a=1", b"{}", "1", "n"), ("POST", "/p", "", b"{ }", "1", "n"),
                                     ("POST", "/p", "", b"{}", "2", "n"), ("POST", "/p", "", b"{}", "1", "m")])
def test_any_change_breaks_the_signature(changed: tuple[str, str, str, bytes, str, str]) -> None:
    good = sign("s", "POST", "/p", "", b"{}", "1", "n")
    assert matches("s", good, "POST", "/p", "", b"{}", "1", "n")
    assert not matches("s", good, *changed)
