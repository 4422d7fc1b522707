"""Supplier credentials sealed under the vault's active AES-256-GCM key (the key file of fulfillment/vault.py).

The associated data names the key id and the supplier, so a sealed secret copied to another supplier's row, or
relabelled with another key id, does not open. Plain secrets exist only in memory, in the adapter's config
(whose repr hides them); they are never logged or put in an error message.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fulfillment.errors import VaultTampered
from fulfillment.vault import Vault
from storage.records_supply import SealedSecret


def _aad(key_id: str, supplier: str) -> bytes:
    return b"kamibot/supplier-secret/v1|" + key_id.encode() + b"|" + supplier.encode()


def seal_secret(vault: Vault, supplier: str, secret: str) -> SealedSecret:
    if not secret:
        raise ValueError("empty supplier secret")
    kid = vault.ring.active
    nonce = os.urandom(12)
    return SealedSecret(kid, nonce, AESGCM(vault.ring.keys[kid]).encrypt(nonce, secret.encode(), _aad(kid, supplier)))


def open_secret(vault: Vault, supplier: str, sealed: SealedSecret) -> str:
    key = vault.ring.keys.get(sealed.key_id)
    if key is None:
        raise VaultTampered(f"supplier {supplier}: credential under unknown key {sealed.key_id!r}")
    try:
        return AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, _aad(sealed.key_id, supplier)).decode()
    except InvalidTag:
        raise VaultTampered(f"supplier {supplier}: credential failed authentication") from None
