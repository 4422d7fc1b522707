"""Code import: streaming .txt/.csv, dedupe within the file and against the vault, bad files change nothing."""

from __future__ import annotations

import logging

import pytest

from fulfillment.errors import ImportRefused
from fulfillment.importer import ImportSource, import_codes
from fulfillment.vault import Vault
from tests.storage.seed import make_shop


async def _import(shop, pool, path, kind="txt", **kw):
    return await import_codes(shop.store, shop.vault, pool, ImportSource(path, kind), **kw)


async def test_txt_import_strips_whitespace_skips_blank_lines_and_counts_duplicates(shop, tmp_path):
    seeded = await make_shop(shop.store, codes=0)
    f = tmp_path / "codes.txt"
    f.write_text("  AAA-1  \n\nBBB-2\r\nAAA-1\n\t\nCCC-3\n", encoding="utf-8")
    stats = await _import(shop, seeded.pool, f, batch_size=2, supplier="acme", unit_cost=420)
    assert (stats.imported, stats.duplicate_in_batch, stats.duplicate_in_vault, stats.invalid) == (3, 1, 0, [])
    again = tmp_path / "again.txt"
    again.write_text("CCC-3\nDDD-4\n")
    second = await _import(shop, seeded.pool, again)
    assert (second.imported, second.duplicate_in_vault) == (1, 1)
    assert await shop.store.pool_available(seeded.pool.id) == 4


async def test_csv_import_with_uses_expiry_and_invalid_lines_reported_by_number(shop, tmp_path):
    seeded = await make_shop(shop.store, codes=0)
    f = tmp_path / "codes.csv"
    f.write_text("code,uses,expires_at,note\nM-1,3,2030-01-01,multi\nM-2,,,\nM-3,zero,,\n,2,,\nM-4,1,notadate,\n"
                 "M-5,1,2030-06-30T12:00:00+08:00,x\n", encoding="utf-8")
    stats = await _import(shop, seeded.pool, f, "csv")
    assert stats.imported == 3
    assert [line for line, _ in stats.invalid] == [4, 5, 6]
    assert await shop.store.pool_available(seeded.pool.id) == 3 + 1 + 1


async def test_csv_without_code_column_is_refused_and_changes_nothing(shop, tmp_path):
    seeded = await make_shop(shop.store, codes=0)
    f = tmp_path / "bad.csv"
    f.write_text("serial,uses\nX-1,1\n")
    with pytest.raises(ImportRefused, match="code"):
        await _import(shop, seeded.pool, f, "csv")
    assert await shop.store.count_codes() == 0


async def test_file_that_is_not_utf8_is_refused_and_changes_nothing(shop, tmp_path):
    seeded = await make_shop(shop.store, codes=0)
    f = tmp_path / "gbk.txt"
    f.write_bytes(b"GOOD-1\n" * 3 + "卡密-坏\n".encode("gbk"))
    with pytest.raises(ImportRefused, match="UTF-8") as err:
        await _import(shop, seeded.pool, f)
    assert err.value.params["line"] == 4
    assert await shop.store.count_codes() == 0
    assert await shop.store.pool_available(seeded.pool.id) == 0


async def test_negative_unit_cost_is_refused(shop, tmp_path):
    seeded = await make_shop(shop.store, codes=0)
    f = tmp_path / "c.txt"
    f.write_text("A-1\n")
    with pytest.raises(ImportRefused):
        await _import(shop, seeded.pool, f, unit_cost=-5)
    assert await shop.store.count_codes() == 0


async def test_import_never_logs_codes_and_stores_no_plaintext(shop, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    seeded = await make_shop(shop.store, codes=0)
    f = tmp_path / "c.txt"
    f.write_text("TOPSECRET-111\nTOPSECRET-222\n" + "TOPSECRET-BAD\x01\n")
    stats = await _import(shop, seeded.pool, f)
    assert stats.imported == 2
    assert len(stats.invalid) == 1
    assert all("TOPSECRET" not in reason for _, reason in stats.invalid)
    assert not any("TOPSECRET" in rec.getMessage() for rec in caplog.records)
    db_bytes = (tmp_path / "shop.db").read_bytes() + (tmp_path / "shop.db-wal").read_bytes()
    assert b"TOPSECRET" not in db_bytes


async def test_same_code_under_another_key_is_still_a_duplicate(shop, tmp_path):
    seeded = await make_shop(shop.store, codes=0)
    f = tmp_path / "c.txt"
    f.write_text("SAME-1\n")
    await _import(shop, seeded.pool, f)
    rotated = Vault(shop.vault.ring)
    rotated.rotate()  # in-memory only: new active key, same HMAC key
    stats = await import_codes(shop.store, rotated, seeded.pool, ImportSource(f, "txt"))
    assert (stats.imported, stats.duplicate_in_vault) == (0, 1)
