"""Key rotation: a new active key, then every row re-encrypted in batches while the shop keeps selling."""

from __future__ import annotations

import logging

from fulfillment.vault import Vault, key_checks
from storage.protocol import Store

log = logging.getLogger("kamibot.keys")


async def rotate_keys(store: Store, vault: Vault, batch: int = 500) -> tuple[str, int]:
    """(new key id, rows moved). Each row moves by a conditional update, so a concurrent
    sale reading the old ciphertext and this rewrite never conflict: both keys stay in the file."""
    ring = vault.rotate()
    for kid, check in key_checks(ring).items():
        await store.register_vault_key(kid, check)
    log.info("event=keys.rotated active_key=%s", ring.active)
    return ring.active, await reencrypt(store, vault, batch)


async def reencrypt(store: Store, vault: Vault, batch: int = 500) -> int:
    moved = 0
    after = 0
    while rows := await store.codes_not_under_key(vault.active_key_id, after, batch):
        for row in rows:
            if await store.rekey_code(row.id, row.key_id, vault.reseal(row)):
                moved += 1
        after = rows[-1].id
    log.info("event=keys.reencrypted rows=%s active_key=%s", moved, vault.active_key_id)
    return moved
