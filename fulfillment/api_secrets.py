"""Secrets the order API keeps at rest (client secrets, stored idempotent responses): AES-256-GCM under the vault's
active key (fulfillment/vault.py key ring), each bound by its associated data to its purpose and owner, so a
ciphertext copied to another row or purpose fails to open."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fulfillment.errors import VaultTampered
from fulfillment.vault import Vault
from storage.protocols.api import Sealed


class SecretBox:
    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    @staticmethod
    def _aad(purpose: str, owner: str, key_id: str) -> bytes:
        return f"kamibot/{purpose}/v1|{key_id}|{owner}".encode()

    def seal(self, purpose: str, owner: str, plain: bytes) -> Sealed:
        ring = self.vault.ring
        nonce = os.urandom(12)
        ct = AESGCM(ring.keys[ring.active]).encrypt(nonce, plain, self._aad(purpose, owner, ring.active))
        return Sealed(ring.active, nonce, ct)

    def open(self, purpose: str, owner: str, sealed: Sealed) -> bytes:
        key = self.vault.ring.keys.get(sealed.key_id)
        if key is None:
            raise VaultTampered(f"{purpose} of {owner} names unknown key {sealed.key_id!r}")
        try:
            return AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, self._aad(purpose, owner, sealed.key_id))
        except InvalidTag:
            raise VaultTampered(f"{purpose} of {owner} failed authentication") from None
