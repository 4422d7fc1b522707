"""WeChat Pay APIv3 signatures and AEAD: round trips, and every way a signature or resource can be wrong."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from fulfillment.wechatpay_crypto import (
    DecryptError,
    PlatformKeys,
    SignatureError,
    authorization,
    decrypt_resource,
    encrypt_resource,
    notification_message,
    parse_authorization,
    request_message,
    rsa_sign,
    rsa_verify,
    verify_signed,
)
from tests.wechatpay.conftest import PUB_KEY_ID, make_certificate

KEY = b"0123456789abcdef0123456789abcdef"


def _headers(key, body: str, serial: str, ts: int | None = None, nonce: str = "n0nce") -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    return {"Wechatpay-Timestamp": str(ts), "Wechatpay-Nonce": nonce, "Wechatpay-Serial": serial,
            "Wechatpay-Signature": rsa_sign(key, notification_message(str(ts), nonce, body)),
            "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048"}


def test_request_authorization_round_trip(keys):
    body = '{"mchid":"1900000109"}'
    header = authorization("1900000109", "SERIAL1", keys.merchant, "post", "/v3/pay/transactions/native", body,
                           1_700_000_000, nonce="ABC")
    fields = parse_authorization(header)
    assert header.startswith("WECHATPAY2-SHA256-RSA2048 mchid=")
    assert {k: fields[k] for k in ("mchid", "nonce_str", "timestamp", "serial_no")} == {
        "mchid": "1900000109", "nonce_str": "ABC", "timestamp": "1700000000", "serial_no": "SERIAL1"}
    message = request_message("POST", "/v3/pay/transactions/native", "1700000000", "ABC", body)
    assert message == "POST\n/v3/pay/transactions/native\n1700000000\nABC\n" + body + "\n"
    assert rsa_verify(keys.merchant.public_key(), message, fields["signature"])
    assert not rsa_verify(keys.merchant.public_key(), message.replace("native", "jsapi"), fields["signature"])
    assert not rsa_verify(keys.platform.public_key(), message, fields["signature"])


def test_response_signature_verifies_in_public_key_mode(keys):
    platform = PlatformKeys(public_keys={PUB_KEY_ID: keys.platform.public_key()})
    now = datetime.now(UTC)
    nonce = verify_signed(platform, _headers(keys.platform, "{}", PUB_KEY_ID), "{}", now)
    assert nonce == "n0nce"


def test_response_signature_verifies_in_certificate_mode(keys):
    platform = PlatformKeys(certificates=[keys.certificate])
    now = datetime.now(UTC)
    assert verify_signed(platform, _headers(keys.platform, "{}", keys.cert_serial), "{}", now) == "n0nce"
    lower = keys.cert_serial.lower()  # serials compare as numbers
    assert verify_signed(platform, _headers(keys.platform, "{}", lower), "{}", now) == "n0nce"


@pytest.mark.parametrize("case", ["wrong_key", "body_changed", "old", "future", "unknown_pub_key", "unknown_cert",
                                  "bad_base64", "missing", "other_type"])
def test_bad_signatures_are_refused(keys, case):
    platform = PlatformKeys(public_keys={PUB_KEY_ID: keys.platform.public_key()}, certificates=[keys.certificate])
    now = datetime.now(UTC)
    body = '{"id":"1"}'
    headers = _headers(keys.platform, body, PUB_KEY_ID)
    if case == "wrong_key":
        headers = _headers(rsa.generate_private_key(public_exponent=65537, key_size=2048), body, PUB_KEY_ID)
    elif case == "body_changed":
        body = '{"id":"2"}'
    elif case in ("old", "future"):
        headers = _headers(keys.platform, body, PUB_KEY_ID, int(now.timestamp()) + (-301 if case == "old" else 301))
    elif case == "unknown_pub_key":
        headers["Wechatpay-Serial"] = "PUB_KEY_ID_999"
    elif case == "unknown_cert":
        headers["Wechatpay-Serial"] = "ABCDEF0123"
    elif case == "bad_base64":
        headers["Wechatpay-Signature"] = "!!not base64!!"
    elif case == "missing":
        del headers["Wechatpay-Signature"]
    elif case == "other_type":
        headers["Wechatpay-Signature-Type"] = "WECHATPAY2-SM2-WITH-SM3"
    with pytest.raises(SignatureError):
        verify_signed(platform, headers, body, now)


def test_expired_platform_certificate_is_refused(keys):
    old = make_certificate(keys.platform, 12345, not_after=datetime.now(UTC) - timedelta(minutes=1))
    platform = PlatformKeys(certificates=[old])
    with pytest.raises(SignatureError, match="validity"):
        verify_signed(platform, _headers(keys.platform, "{}", format(12345, "X")), "{}", datetime.now(UTC))


def test_aead_round_trip_and_tampering():
    nonce = secrets.token_hex(6)
    ciphertext = encrypt_resource(KEY, nonce, b'{"trade_state":"SUCCESS"}', "transaction")
    assert decrypt_resource(KEY, nonce, ciphertext, "transaction") == b'{"trade_state":"SUCCESS"}'
    with pytest.raises(DecryptError):
        decrypt_resource(KEY, nonce, ciphertext, "refund")  # associated data is authenticated
    with pytest.raises(DecryptError):
        decrypt_resource(b"x" * 32, nonce, ciphertext, "transaction")
    with pytest.raises(DecryptError):
        decrypt_resource(KEY, nonce, "not-base64!", "transaction")


def test_errors_never_carry_key_material(keys):
    ciphertext = encrypt_resource(KEY, "abcdefabcdef", b"{}", "")
    with pytest.raises(DecryptError) as caught:
        decrypt_resource(b"y" * 32, "abcdefabcdef", ciphertext, "")
    assert KEY.decode() not in str(caught.value)
    assert "y" * 32 not in str(caught.value)
