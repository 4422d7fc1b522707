"""Vault: encryption at rest, tamper detection, key file lifecycle, rotation while selling."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from dataclasses import replace

import pytest

from bot.composition import build_shop
from fulfillment.errors import VaultError, VaultTampered
from fulfillment.importer import ImportSource, import_codes
from fulfillment.orders import CheckoutRequest
from fulfillment.rotation import rotate_keys
from fulfillment.vault import KeyRing, Vault, normalise_code, write_key_file
from storage.records import EncryptedCode
from tests.fulfillment.conftest import settings_for
from tests.storage.seed import make_shop


def _row(vault: Vault, code: str, row_id: int = 1) -> EncryptedCode:
    sealed = vault.seal(code)
    return EncryptedCode(row_id, sealed.digest, sealed.key_id, sealed.nonce, sealed.ciphertext)


def test_seal_and_open_round_trip_without_plaintext_at_rest():
    vault = Vault(KeyRing.new())
    row = _row(vault, "ABCD-EFGH-1234")
    assert b"ABCD" not in row.ciphertext
    assert vault.open(row) == "ABCD-EFGH-1234"


def test_flipped_byte_fails_loudly_without_revealing_the_code():
    vault = Vault(KeyRing.new())
    row = _row(vault, "SECRET-CODE-1")
    flipped = bytes([row.ciphertext[0] ^ 1]) + row.ciphertext[1:]
    with pytest.raises(VaultTampered) as err:
        vault.open(replace(row, ciphertext=flipped))
    assert "SECRET" not in str(err.value)


def test_ciphertext_swapped_between_rows_fails():
    vault = Vault(KeyRing.new())
    a, b = _row(vault, "CODE-A", 1), _row(vault, "CODE-B", 2)
    with pytest.raises(VaultTampered):
        vault.open(replace(a, nonce=b.nonce, ciphertext=b.ciphertext))


def test_wrong_key_fails():
    row = _row(Vault(KeyRing.new()), "CODE-X")
    with pytest.raises(VaultTampered):
        Vault(KeyRing.new()).open(row)


def test_relabelled_key_id_fails():
    ring = KeyRing.new()
    ring2 = KeyRing("k2", {**ring.keys, "k2": ring.keys["k1"]}, ring.hmac_key)
    row = _row(Vault(ring), "CODE-Y")
    with pytest.raises(VaultTampered):
        Vault(ring2).open(replace(row, key_id="k2"))


@pytest.mark.parametrize(("raw", "expected"), [("  ABC-123 \n", "ABC-123"), ("\tＡＢＣ１\r\n", "ABC1")])
def test_normalise_strips_whitespace_and_folds_width(raw, expected):
    assert normalise_code(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "AB\x00CD", "X" * 300])
def test_normalise_refuses_empty_control_and_oversized(raw):
    with pytest.raises(ValueError, match="code"):
        normalise_code(raw)


async def test_new_shop_creates_key_file_with_mode_0600(tmp_path):
    shop = await build_shop(settings_for(tmp_path))
    await shop.close()
    mode = stat.S_IMODE(os.stat(tmp_path / "vault.key").st_mode)
    assert mode == 0o600


async def _shop_with_codes(tmp_path):
    shop = await build_shop(settings_for(tmp_path))
    seeded = await make_shop(shop.store, codes=0)
    src = tmp_path / "c.txt"
    src.write_text("AAA-1\nAAA-2\n")
    await import_codes(shop.store, shop.vault, seeded.pool, ImportSource(src, "txt"))
    return shop, seeded


async def test_missing_key_file_for_existing_vault_refuses_and_creates_nothing(tmp_path):
    shop, _ = await _shop_with_codes(tmp_path)
    await shop.close()
    (tmp_path / "vault.key").unlink()
    with pytest.raises(VaultError, match="missing"):
        await build_shop(settings_for(tmp_path))
    assert not (tmp_path / "vault.key").exists()


async def test_unreadable_key_file_refuses_and_is_not_overwritten(tmp_path):
    shop, _ = await _shop_with_codes(tmp_path)
    await shop.close()
    (tmp_path / "vault.key").write_text("not json")
    with pytest.raises(VaultError, match="not a valid"):
        await build_shop(settings_for(tmp_path))
    assert (tmp_path / "vault.key").read_text() == "not json"


async def test_wrong_key_file_refuses_to_start(tmp_path):
    shop, _ = await _shop_with_codes(tmp_path)
    await shop.close()
    write_key_file(tmp_path / "vault.key", KeyRing.new())
    before = (tmp_path / "vault.key").read_bytes()
    with pytest.raises(VaultError, match="does not match"):
        await build_shop(settings_for(tmp_path))
    assert (tmp_path / "vault.key").read_bytes() == before


async def test_rotation_while_purchases_run_keeps_every_code_readable(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    shop = await build_shop(settings_for(tmp_path))
    seeded = await make_shop(shop.store, codes=0)
    src = tmp_path / "codes.txt"
    codes = [f"ROT-{i:05d}" for i in range(600)]
    src.write_text("\n".join(codes))
    await import_codes(shop.store, shop.vault, seeded.pool, ImportSource(src, "txt"))
    delivered: list[str] = []

    async def buyer(n: int) -> None:
        for _i in range(5):  # 12 buyers x 5 orders: inside the default per-user risk limits
            order = await shop.orders.checkout(CheckoutRequest("console", f"b{n}", f"b{n}", seeded.sku.id, 1))
            await shop.payments.receive(shop.providers["test"].pay(order))
            built = await shop.delivery.build(order.id, "deliver")
            delivered.extend(built.codes)
            await asyncio.sleep(0)

    async def rotate() -> tuple[str, int]:
        await asyncio.sleep(0.01)
        return await rotate_keys(shop.store, shop.vault, batch=50)

    results = await asyncio.gather(*(buyer(n) for n in range(12)), rotate())
    new_key, moved = results[-1]
    assert new_key == "k2"
    assert moved == 600
    assert await shop.store.codes_not_under_key("k2", 0, 10) == []
    assert len(delivered) == 60
    assert len(set(delivered)) == 60
    assert set(delivered) <= set(codes)
    for row_id in range(1, 601):
        row = await shop.store.code_by_id(row_id)
        assert shop.vault.open(row) in codes
    assert not any(code in rec.getMessage() for rec in caplog.records for code in delivered)
    await shop.close()
    reopened = await build_shop(settings_for(tmp_path))  # the rotated key file still matches the vault
    assert reopened.vault.active_key_id == "k2"
    await reopened.close()


def test_a_running_process_picks_up_keys_rotated_by_another(tmp_path):
    path = tmp_path / "vault.key"
    write_key_file(path, KeyRing.new())
    from fulfillment.vault import read_key_file

    shop_side = Vault(read_key_file(path), key_path=path)  # the long-running shop process
    cli_side = Vault(read_key_file(path), key_path=path)  # `kamibot keys rotate` in another process
    row = _row(shop_side, "ROTATE-ME")
    cli_side.rotate()
    moved = cli_side.reseal(row)
    assert moved.key_id == "k2"
    assert shop_side.open(moved) == "ROTATE-ME"
    assert shop_side.open(row) == "ROTATE-ME"  # rows not yet moved still open with the old key
