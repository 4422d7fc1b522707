"""WeChat Pay APIv3 cryptography: request signing, response/notification verification, AEAD_AES_256_GCM.

Wire formats (https://pay.weixin.qq.com/doc/v3/merchant/4012365336 and the `wechatpayv3` package's utils.py):
- request: Authorization `WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",signature="…",timestamp="…",
  serial_no="…"`, the signature is RSA-SHA256 (PKCS#1 v1.5) over `METHOD\\nURL\\nTIMESTAMP\\nNONCE\\nBODY\\n`,
  URL being path plus query;
- response and notification: `Wechatpay-Signature` over `TIMESTAMP\\nNONCE\\nBODY\\n` with the platform key
  named by `Wechatpay-Serial` (`PUB_KEY_ID_…` = WeChat Pay public key, otherwise a platform certificate serial);
- resources: AES-256-GCM with the 32-byte APIv3 key, 12-byte text nonce, `associated_data` as AAD, base64
  ciphertext with the 16-byte tag appended;
- JSAPI pay-sign: RSA-SHA256 over `appId\\ntimeStamp\\nnonceStr\\npackage\\n` with the merchant key.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SCHEMA = "WECHATPAY2-SHA256-RSA2048"
PUBLIC_KEY_PREFIX = "PUB_KEY_ID_"


class SignatureError(Exception):
    """A signature, key id or timestamp did not check out; the message never carries key material."""


class DecryptError(Exception):
    """A resource could not be decrypted or authenticated with the APIv3 key."""


def nonce_str() -> str:
    return secrets.token_hex(16).upper()


def rsa_sign(key: rsa.RSAPrivateKey, message: str) -> str:
    return base64.b64encode(key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_verify(key: rsa.RSAPublicKey, message: str, signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), message.encode(), padding.PKCS1v15(),
                   hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def request_message(method: str, url: str, timestamp: str, nonce: str, body: str) -> str:
    return f"{method.upper()}\n{url}\n{timestamp}\n{nonce}\n{body}\n"


def authorization(mchid: str, serial_no: str, key: rsa.RSAPrivateKey, method: str, url: str, body: str,
                  timestamp: int, nonce: str | None = None) -> str:
    nonce = nonce or nonce_str()
    signature = rsa_sign(key, request_message(method, url, str(timestamp), nonce, body))
    return (f'{SCHEMA} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
            f'timestamp="{timestamp}",serial_no="{serial_no}"')


def parse_authorization(header: str) -> dict[str, str]:
    """The fields of an Authorization header (used by the fake server and tests); empty when malformed."""
    schema, _, rest = header.partition(" ")
    if schema != SCHEMA:
        return {}
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, eq, value = part.strip().partition("=")
        if not eq or len(value) < 2 or value[0] != '"' or value[-1] != '"':
            return {}
        fields[name] = value[1:-1]
    return fields


def notification_message(timestamp: str, nonce: str, body: str) -> str:
    return f"{timestamp}\n{nonce}\n{body}\n"


def jsapi_pay_sign(key: rsa.RSAPrivateKey, app_id: str, timestamp: str, nonce: str, package: str) -> str:
    return rsa_sign(key, f"{app_id}\n{timestamp}\n{nonce}\n{package}\n")


def decrypt_resource(api_v3_key: bytes, nonce: str, ciphertext: str, associated_data: str) -> bytes:
    try:
        return AESGCM(api_v3_key).decrypt(nonce.encode(), base64.b64decode(ciphertext, validate=True),
                                          associated_data.encode())
    except (InvalidTag, binascii.Error, ValueError):
        raise DecryptError("resource does not authenticate under the APIv3 key") from None


def encrypt_resource(api_v3_key: bytes, nonce: str, plaintext: bytes, associated_data: str) -> str:
    """What WeChat Pay does to a resource (the fake server and tests use it)."""
    return base64.b64encode(AESGCM(api_v3_key).encrypt(nonce.encode(), plaintext, associated_data.encode())).decode()


def load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the merchant key must be an RSA private key")
    return key


def load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the WeChat Pay public key must be an RSA public key")
    return key


def _serial_int(serial: str) -> int | None:
    try:
        return int(serial, 16)
    except ValueError:
        return None


@dataclass
class PlatformKeys:
    """The keys WeChat Pay signs with, by `Wechatpay-Serial`: public-key ids and/or platform certificates.

    During a switch from certificates to the public key WeChat Pay signs with either, so both may be set.
    """

    public_keys: dict[str, rsa.RSAPublicKey] = field(default_factory=dict)
    certificates: list[x509.Certificate] = field(default_factory=list)

    @classmethod
    def load(cls, public_key_id: str = "", public_key_file: Path | None = None,
             certificate_files: Iterable[Path] = ()) -> PlatformKeys:
        keys = cls()
        if public_key_id and public_key_file is not None:
            keys.public_keys[public_key_id] = load_public_key(public_key_file.read_bytes())
        for path in certificate_files:
            keys.certificates.extend(x509.load_pem_x509_certificates(path.read_bytes()))
        return keys

    def key_for(self, serial: str, now: datetime) -> rsa.RSAPublicKey:
        if serial.startswith(PUBLIC_KEY_PREFIX):
            found = self.public_keys.get(serial)
            if found is None:
                raise SignatureError("unknown WeChat Pay public key id")
            return found
        wanted = _serial_int(serial)
        for cert in self.certificates:
            if wanted is not None and cert.serial_number == wanted:
                if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                    raise SignatureError("platform certificate outside its validity period")
                key = cert.public_key()
                if not isinstance(key, rsa.RSAPublicKey):
                    raise SignatureError("platform certificate without an RSA key")
                return key
        raise SignatureError("unknown platform certificate serial")

    def __bool__(self) -> bool:
        return bool(self.public_keys or self.certificates)


def header(headers: Mapping[str, str], name: str) -> str:
    """Header lookup that works for plain dicts (any case) and case-insensitive mappings."""
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    return value or ""


def verify_signed(keys: PlatformKeys, headers: Mapping[str, str], body: str, now: datetime,
                  window_s: int = 300) -> str:
    """Check a WeChat Pay signature and its timestamp window; returns the nonce (for the replay check)."""
    if header(headers, "Wechatpay-Signature-Type") not in ("", SCHEMA):
        raise SignatureError("unsupported signature type")
    timestamp = header(headers, "Wechatpay-Timestamp")
    nonce = header(headers, "Wechatpay-Nonce")
    signature = header(headers, "Wechatpay-Signature")
    if not (timestamp.isdigit() and nonce and signature):
        raise SignatureError("missing signature headers")
    if abs(now.timestamp() - int(timestamp)) > window_s:
        raise SignatureError("timestamp outside the 5-minute window")
    key = keys.key_for(header(headers, "Wechatpay-Serial"), now)
    if not rsa_verify(key, notification_message(timestamp, nonce, body), signature):
        raise SignatureError("signature does not verify")
    return nonce


