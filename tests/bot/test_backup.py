"""bot/backup.py: what `kamibot backup` and `kamibot restore` refuse, with a clear message and nothing changed (the
mid-burst backup and restore themselves: tests/e2e/test_backup.py and test_backup_postgres.py)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot import backup
from bot.composition import build_shop
from bot.settings import Settings
from fulfillment.errors import VaultError
from tests.storage.seed import make_shop

ROOT = Path(__file__).resolve().parents[2]


async def _shop_with_backup(tmp_path: Path) -> tuple[Settings, Path]:
    settings = Settings(data_dir=tmp_path / "shop")
    shop = await build_shop(settings)
    await make_shop(shop.store, codes=5, vault=shop.vault)
    await shop.close()
    target = tmp_path / "shop.backup"
    assert await backup.run_backup(settings, target) == 0
    return settings, target


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


async def test_backup_never_overwrites_a_file(tmp_path, capsys):
    settings, target = await _shop_with_backup(tmp_path)
    before = target.read_bytes()
    with pytest.raises(ValueError, match="already exists"):
        await backup.run_backup(settings, target)
    assert target.read_bytes() == before
    assert str(settings.resolved_key_file.resolve()) in capsys.readouterr().out  # said on the first, good run


async def test_restore_refuses_a_data_dir_that_is_not_empty_and_changes_nothing(tmp_path):
    _, target = await _shop_with_backup(tmp_path)
    other = Settings(data_dir=tmp_path / "other")
    other_shop = await build_shop(other)  # another shop lives there
    await other_shop.close()
    before = _listing(other.data_dir)
    with pytest.raises(ValueError, match="empty data dir only"):
        await backup.run_restore(other, target)
    assert _listing(other.data_dir) == before

    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"notes\.txt"):
        await backup.run_restore(Settings(data_dir=stray), target)
    assert _listing(stray) == {"notes.txt": b"mine"}


async def test_restore_with_another_shops_key_file_restores_nothing(tmp_path):
    _, target = await _shop_with_backup(tmp_path)
    foreign = await build_shop(Settings(data_dir=tmp_path / "foreign"))
    await foreign.close()
    fresh = Settings(data_dir=tmp_path / "fresh")
    fresh.data_dir.mkdir()
    key = (tmp_path / "foreign" / "vault.key").read_bytes()
    (fresh.data_dir / "vault.key").write_bytes(key)
    with pytest.raises(VaultError, match="nothing restored"):
        await backup.run_restore(fresh, target)
    assert _listing(fresh.data_dir) == {"vault.key": key}


async def test_restore_with_the_right_key_file_already_in_place_says_the_shop_can_start(tmp_path, capsys):
    settings, target = await _shop_with_backup(tmp_path)
    fresh = Settings(data_dir=tmp_path / "fresh")
    fresh.data_dir.mkdir()
    (fresh.data_dir / "vault.key").write_bytes(settings.resolved_key_file.read_bytes())
    capsys.readouterr()
    assert await backup.run_restore(fresh, target) == 0
    out = capsys.readouterr().out
    assert str(fresh.resolved_key_file.resolve()) in out
    assert "opens the restored vault" in out
    shop = await build_shop(fresh)  # and the shop starts on it
    assert await shop.store.count_codes() == 5
    await shop.close()


async def test_restore_refuses_what_is_not_a_kamibot_backup_of_this_version(tmp_path):
    settings, target = await _shop_with_backup(tmp_path)
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(8192))
    plain = tmp_path / "plain.db"
    sqlite3.connect(plain).execute("CREATE TABLE t (x)").connection.close()
    newer = tmp_path / "newer.db"
    newer.write_bytes(target.read_bytes())
    db = sqlite3.connect(newer)
    db.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 'x')")
    db.commit()
    db.close()
    fresh = Settings(data_dir=tmp_path / "fresh")
    for file, why in [(junk, "not a SQLite database"), (plain, "not a kamibot database"),
                      (newer, "newer than this kamibot"), (tmp_path / "missing.db", "no backup file")]:
        with pytest.raises(ValueError, match=why):
            await backup.run_restore(fresh, file)
        assert not fresh.data_dir.exists()


def test_a_postgresql_shop_is_pointed_to_pg_dump_and_told_where_the_key_is(tmp_path):
    env = {**os.environ, "KAMIBOT_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT),
           "KAMIBOT_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test"}
    for command in ("backup", "restore"):
        result = subprocess.run([sys.executable, "-m", "bot", command, str(tmp_path / "x.backup")],
                                capture_output=True, text=True, env=env, timeout=60, check=False)
        assert result.returncode == 2
        assert "pg_dump" in result.stderr
        assert "Backups" in result.stderr
        assert str((tmp_path / "vault.key").resolve()) in result.stderr
    assert list(tmp_path.iterdir()) == []
