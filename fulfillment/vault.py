"""The code vault: AES-256-GCM at rest, a keyed HMAC for dedupe, a rotatable key file.

A ciphertext's associated data names its key id and its row's HMAC digest, so a
ciphertext moved to another row, or relabelled with another key id, fails to
decrypt. After decryption the HMAC of the plaintext must equal the row's digest.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fulfillment.errors import VaultError, VaultTampered
from storage.records import EncryptedCode, NewCode

_CHECK_LABEL = b"kamibot/key-check/v1"
MAX_CODE_LENGTH = 256


def normalise_code(raw: str) -> str:
    """Strip, fold width and compatibility forms (NFKC); a code is one printable line."""
    code = raw.strip()
    if not code.isascii():
        code = unicodedata.normalize("NFKC", code).strip()
    if not code:
        raise ValueError("empty code")
    if len(code) > MAX_CODE_LENGTH:
        raise ValueError(f"code longer than {MAX_CODE_LENGTH} characters")
    if not code.isprintable():
        raise ValueError("code contains control characters")
    return code


@dataclass(frozen=True)
class KeyRing:
    active: str
    keys: Mapping[str, bytes]
    hmac_key: bytes

    def to_json(self) -> str:
        return json.dumps({
            "version": 1,
            "active": self.active,
            "keys": {k: base64.b64encode(v).decode() for k, v in self.keys.items()},
            "hmac_key": base64.b64encode(self.hmac_key).decode(),
        }, indent=2)

    @classmethod
    def from_json(cls, text: str) -> KeyRing:
        data = json.loads(text)
        keys = {k: base64.b64decode(v, validate=True) for k, v in data["keys"].items()}
        hmac_key = base64.b64decode(data["hmac_key"], validate=True)
        if data["active"] not in keys or any(len(k) != 32 for k in keys.values()) or len(hmac_key) < 32:
            raise ValueError("malformed key ring")
        return cls(str(data["active"]), keys, hmac_key)

    @classmethod
    def new(cls) -> KeyRing:
        return cls("k1", {"k1": AESGCM.generate_key(bit_length=256)}, secrets.token_bytes(32))


def key_checks(ring: KeyRing) -> dict[str, bytes]:
    """Non-secret check values that let a store tell whether a key file is the right one."""
    checks = {kid: hmac.new(key, _CHECK_LABEL, hashlib.sha256).digest() for kid, key in ring.keys.items()}
    checks["hmac"] = hmac.new(ring.hmac_key, _CHECK_LABEL, hashlib.sha256).digest()
    return checks


def read_key_file(path: Path) -> KeyRing:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise VaultError(f"vault key file {path} cannot be read ({exc.strerror}); refusing to start") from None
    try:
        return KeyRing.from_json(text)
    except (ValueError, KeyError, TypeError):
        raise VaultError(f"vault key file {path} is not a valid kamibot key file; refusing to start") from None


def write_key_file(path: Path, ring: KeyRing) -> None:
    """Atomic replace with mode 0600 from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(ring.to_json())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def open_key_ring(path: Path, stored_checks: Mapping[str, bytes]) -> tuple[KeyRing, bool]:
    """Load the key file, or create it for a new shop. (ring, created).

    An existing vault (the store knows key checks) never gets a new file: a
    missing or wrong key file stops the start with a clear message.
    """
    if not path.exists():
        if stored_checks:
            raise VaultError(f"vault key file {path} is missing but the database holds encrypted codes;"
                             " restore the key file from backup (refusing to create a new one)")
        ring = KeyRing.new()
        write_key_file(path, ring)
        return ring, True
    ring = read_key_file(path)
    mine = key_checks(ring)
    for kid, check in stored_checks.items():
        if kid not in mine:
            raise VaultError(f"vault key file {path} lacks key {kid!r} used by the database; refusing to start")
        if not hmac.compare_digest(mine[kid], check):
            raise VaultError(f"vault key file {path} does not match key {kid!r} of the database; refusing to start")
    return ring, False


class Vault:
    def __init__(self, ring: KeyRing, key_path: Path | None = None) -> None:
        self._ring = ring
        self._key_path = key_path
        self._ciphers: dict[str, AESGCM] = {}

    def _cipher(self, key_id: str, row_id: int = 0) -> AESGCM:
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            cipher = self._ciphers[key_id] = AESGCM(self._key(key_id, row_id))
        return cipher

    @property
    def active_key_id(self) -> str:
        return self._ring.active

    @property
    def ring(self) -> KeyRing:
        return self._ring

    def digest(self, code: str) -> bytes:
        return hmac.digest(self._ring.hmac_key, code.encode("utf-8"), "sha256")

    def fingerprint(self, who: str) -> str:
        """Keyed hash of a payer identity (`channel:id`) as the risk module and payment events carry it."""
        return self.digest(who).hex()[:32]

    @staticmethod
    def _aad(key_id: str, digest: bytes) -> bytes:
        return b"kamibot/code/v1|" + key_id.encode() + b"|" + digest

    def _encrypt(self, code: str, digest: bytes) -> tuple[str, bytes, bytes]:
        """(key id, nonce, ciphertext) under the active key, bound to `digest` by the associated data."""
        kid = self._ring.active
        nonce = os.urandom(12)
        return kid, nonce, self._cipher(kid).encrypt(nonce, code.encode("utf-8"), self._aad(kid, digest))

    def seal(self, code: str, uses: int = 1, **extra: object) -> NewCode:
        """Encrypt an already normalised code."""
        digest = self.digest(code)
        kid, nonce, ct = self._encrypt(code, digest)
        return NewCode(digest, kid, nonce, ct, uses, **extra)  # type: ignore[arg-type]

    def seal_many(self, codes: list[str]) -> list[NewCode]:
        """`seal` for a batch of normalised single-use codes, as one tight loop (imports of millions)."""
        kid = self._ring.active
        encrypt = self._cipher(kid).encrypt
        mac_key = self._ring.hmac_key
        prefix = b"kamibot/code/v1|" + kid.encode() + b"|"
        digest_of, urandom = hmac.digest, os.urandom
        out = []
        for code in codes:
            raw = code.encode("utf-8")
            digest = digest_of(mac_key, raw, "sha256")
            nonce = urandom(12)
            out.append(NewCode(digest, kid, nonce, encrypt(nonce, raw, prefix + digest)))
        return out

    def reseal(self, row: EncryptedCode) -> EncryptedCode:
        kid, nonce, ct = self._encrypt(self.open(row), row.digest)
        return EncryptedCode(row.id, row.digest, kid, nonce, ct)

    def open(self, row: EncryptedCode) -> str:
        cipher = self._cipher(row.key_id, row.id)
        try:
            plain = cipher.decrypt(row.nonce, row.ciphertext, self._aad(row.key_id, row.digest))
        except InvalidTag:
            raise VaultTampered(f"code row {row.id} failed authentication (tampered, swapped or wrong key)") from None
        code = plain.decode("utf-8")
        if not hmac.compare_digest(self.digest(code), row.digest):
            raise VaultTampered(f"code row {row.id} does not match its digest")
        return code

    def _key(self, key_id: str, row_id: int) -> bytes:
        if key_id not in self._ring.keys and self._key_path is not None:
            # another process rotated keys while we run: pick up the new key file
            self._ring = read_key_file(self._key_path)
        try:
            return self._ring.keys[key_id]
        except KeyError:
            raise VaultTampered(f"code row {row_id} names unknown key {key_id!r}") from None

    def rotate(self) -> KeyRing:
        """Add a fresh key and make it active; the old keys stay until every row moved."""
        n = 1 + max(int(k[1:]) for k in self._ring.keys if k[1:].isdigit())
        kid = f"k{n}"
        keys = dict(self._ring.keys)
        keys[kid] = AESGCM.generate_key(bit_length=256)
        self._ring = KeyRing(kid, keys, self._ring.hmac_key)
        if self._key_path is not None:
            write_key_file(self._key_path, self._ring)
        return self._ring
