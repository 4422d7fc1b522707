"""Authenticating WeChat callbacks: `signature`, `msg_signature` and the AES envelope of safe mode.

Plaintext mode signs (token, timestamp, nonce); safe and compatible mode add `encrypt_type=aes` and
`msg_signature` over (token, timestamp, nonce, Encrypt), and the ciphertext carries our AppID.
https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Message_encryption_and_decryption_instructions.html
wechatpy does the AES part; signatures are compared here in constant time (wechatpy uses `!=`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass

from wechatpy.crypto import PrpCrypto, WeChatCrypto
from wechatpy.utils import WeChatSigner

from handlers.wechat.safe_xml import BadXml, parse_flat


class Forged(Exception):
    """A callback that does not prove it comes from WeChat: answered 403, nothing processed."""


@dataclass(frozen=True)
class Opened:
    fields: dict[str, str]  # the message, decrypted if it came encrypted
    xml: str
    encrypted: bool  # reply encrypted too


def sign(*parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(*parts)
    return str(signer.signature)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("ascii", "replace"), expected.encode("ascii"))


class CallbackCrypto:
    def __init__(self, token: str, app_id: str, encoding_aes_key: str = "", max_age_s: int = 300) -> None:
        self.token = token
        self.max_age_s = max_age_s  # a captured callback replayed later than this is refused
        self.app_id = app_id
        self.aes_key = encoding_aes_key
        if encoding_aes_key:
            try:
                key = base64.b64decode(encoding_aes_key + "=", validate=True)
            except (binascii.Error, ValueError):
                key = b""
            if len(key) != 32:  # the key itself is never put in the message
                raise ValueError("KAMIBOT_WECHAT__ENCODING_AES_KEY must be the 43-character key from the console")
            self._key = key

    def _check(self, query: Mapping[str, str], field: str, *signed: str) -> None:
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        if not timestamp or not nonce or not _same(query.get(field, ""), sign(self.token, timestamp, nonce, *signed)):
            raise Forged(field)

    def verify_url(self, query: Mapping[str, str]) -> str:
        """GET /wechat: the Official Account echoes `echostr` as sent once `signature` checks out."""
        self._check(query, "signature")
        return query.get("echostr", "")

    def open(self, query: Mapping[str, str], body: bytes) -> Opened:
        """Raises Forged (403) or BadXml (400); returns the message fields only when authentic."""
        self._check(query, "signature")
        stamp = query.get("timestamp", "")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > self.max_age_s:
            # MsgIds are remembered longer than this window, so a replay is either refused here or deduplicated
            raise Forged("timestamp outside the window")
        outer = parse_flat(body)
        if query.get("encrypt_type", "raw") != "aes":
            try:
                return Opened(outer, body.decode("utf-8"), False)
            except UnicodeDecodeError:
                raise BadXml("not UTF-8") from None
        if not self.aes_key:
            raise Forged("encrypted message but no EncodingAESKey configured")
        encrypt = outer.get("Encrypt", "")
        if not encrypt:
            raise BadXml("no Encrypt element")
        self._check(query, "msg_signature", encrypt)
        try:
            xml = str(PrpCrypto(self._key).decrypt(encrypt, self.app_id))
        except Exception:  # noqa: BLE001 - wrong key or AppID: garbage padding, bad length, foreign id alike
            raise Forged("message does not decrypt to our AppID") from None
        return Opened(parse_flat(xml), xml, True)

    def seal(self, xml: str, nonce: str, timestamp: str) -> str:
        """The encrypted envelope of a passive reply (safe and compatible mode)."""
        return str(WeChatCrypto(self.token, self.aes_key, self.app_id).encrypt_message(xml, nonce, timestamp))
