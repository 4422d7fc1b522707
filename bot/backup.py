"""`kamibot backup FILE` and `kamibot restore FILE` for a SQLite shop, taken while it sells.

The copy is made with SQLite's online backup API (https://www.sqlite.org/backup.html, Python's
`sqlite3.Connection.backup`) in one step: the whole copy runs inside one read transaction of the source, so it is
the database as of one commit, whatever the shop writes meanwhile (WAL: the reader never blocks the writers, and
a step that copies every page is never restarted by their commits). The copy is checked (`integrity_check`), its
journal mode set back to DELETE so that it is one self-contained file, written under a temporary name with mode
0600 and renamed into place only when complete.

A restore goes only into an empty data dir (the vault key file may already be there), so it can never overwrite a
shop. The vault key is never in a backup: the database holds only non-secret check values of it (vault_keys), and
supplier and API-client secrets are sealed under it. Both commands say where the key file is.

PostgreSQL shops use pg_dump / pg_restore (README, "Backups"); both commands refuse them with that pointer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from bot.composition import open_store
from bot.settings import Settings
from fulfillment.errors import VaultError
from fulfillment.vault import open_key_ring
from storage.migrations import migrations
from storage.url import parse_database_url

POSTGRES_REFUSAL = (
    "this shop's database is PostgreSQL: kamibot backup/restore copy SQLite shops only. Back it up with "
    "`pg_dump --format=custom --file=FILE DSN` and restore it with `pg_restore --dbname=NEW_EMPTY_DB FILE` "
    "(README, section \"Backups\")")
#: files SQLite and the store keep next to a database file
_SIDE_FILES = ("-wal", "-shm", "-journal", ".writelock")


@dataclass(frozen=True)
class Copied:
    path: Path
    size: int
    schema_version: int


def key_notice(key_file: Path) -> str:
    return (f"The vault key is NOT in the backup: it is the file {key_file.resolve()}. Back it up separately "
            "(and keep it apart from the backup file); without it no code in the backup can be decrypted.")


def sqlite_path(settings: Settings) -> Path:
    """The shop's SQLite file; a PostgreSQL shop is refused with the pg_dump pointer."""
    url = parse_database_url(settings.resolved_database_url, base_dir=settings.data_dir)
    if url.backend != "sqlite" or url.sqlite_path is None:
        raise ValueError(POSTGRES_REFUSAL)
    return url.sqlite_path


def _schema_version(db: sqlite3.Connection, what: Path) -> int:
    try:
        row = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
    except sqlite3.DatabaseError:
        raise ValueError(f"{what} is not a kamibot database (no schema_migrations table)") from None
    return int(row[0])


def _checked_version(db: sqlite3.Connection, what: str, name: Path) -> int:
    """SQLite's integrity check, then the schema version; `what` names the file in the error ("the copy of X")."""
    try:
        check = db.execute("PRAGMA integrity_check").fetchone()
    except sqlite3.DatabaseError:
        raise ValueError(f"{what} is not a SQLite database") from None
    if check is None or check[0] != "ok":
        raise ValueError(f"{what} failed SQLite's integrity check: {check}")
    return _schema_version(db, name)


def _copy(source: sqlite3.Connection, target: Path, what: Path) -> int:
    """source → target (a new 0600 file) in one backup step, checked, as one self-contained file; schema version."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    dst = sqlite3.connect(target)
    try:
        source.backup(dst, pages=-1)  # one step: one read transaction, one commit's state
        version = _checked_version(dst, f"the copy of {what}", what)
        dst.execute("PRAGMA journal_mode = DELETE")
    finally:
        dst.close()
    with open(target, "rb") as fh:
        os.fsync(fh.fileno())
    return version


def _discard(path: Path) -> None:
    for name in (path, *(path.with_name(path.name + s) for s in _SIDE_FILES)):
        with contextlib.suppress(FileNotFoundError):
            name.unlink()


def backup_sqlite(database: Path, target: Path) -> Copied:
    """A consistent copy of the live database file `database` at `target` (which must not exist)."""
    if not database.is_file():
        raise ValueError(f"no shop database at {database}")
    if target.exists():
        raise ValueError(f"{target} already exists: choose a new file name (a backup never overwrites a file)")
    if not target.parent.is_dir():
        raise ValueError(f"the folder {target.parent} does not exist")
    part = target.with_name(f".{target.name}.part{os.getpid()}")
    source = sqlite3.connect(database, timeout=30)
    try:
        version = _copy(source, part, database)
        os.replace(part, target)
    except BaseException:
        _discard(part)
        raise
    finally:
        source.close()
    return Copied(target, target.stat().st_size, version)


def _check_backup(backup: Path) -> int:
    """The backup's schema version; refuses a file that is not a sound kamibot backup this version can run."""
    if not backup.is_file():
        raise ValueError(f"no backup file at {backup}")
    db = sqlite3.connect(f"{backup.resolve().as_uri()}?mode=ro", uri=True)
    try:
        version = _checked_version(db, str(backup), backup)
    finally:
        db.close()
    known = max(v for v, _, _ in migrations("sqlite"))
    if version > known:
        raise ValueError(f"{backup} has schema version {version}, newer than this kamibot's {known}: "
                         "restore it with the kamibot version that made it")
    return version


def _refuse_non_empty(data_dir: Path, database: Path, key_file: Path) -> None:
    if data_dir.exists():
        if not data_dir.is_dir():
            raise ValueError(f"the data dir {data_dir} is not a folder")
        key = key_file.resolve()
        there = sorted(p.name for p in data_dir.iterdir() if p.resolve() != key)
        if there:
            raise ValueError(f"restore goes into an empty data dir only, and {data_dir.resolve()} holds "
                             f"{', '.join(there[:5])}{' …' if len(there) > 5 else ''}: nothing restored")
    if database.exists():
        raise ValueError(f"a database already exists at {database}: nothing restored")


def restore_sqlite(backup: Path, database: Path, data_dir: Path, key_file: Path) -> Copied:
    """Put `backup` in place as `database`, in an empty data dir."""
    version = _check_backup(backup)
    _refuse_non_empty(data_dir, database, key_file)
    database.parent.mkdir(parents=True, exist_ok=True)
    part = database.with_name(f".{database.name}.part{os.getpid()}")
    source = sqlite3.connect(f"{backup.resolve().as_uri()}?mode=ro", uri=True)
    try:
        _copy(source, part, backup)
        os.replace(part, database)
    except BaseException:
        _discard(part)
        raise
    finally:
        source.close()
    return Copied(database, database.stat().st_size, version)


def discard_restored(database: Path) -> None:
    """Undo a restore whose key file turned out wrong (the data dir was empty before it)."""
    _discard(database)


def check_key_file(key_file: Path, stored_checks: dict[str, bytes]) -> bool:
    """True: the key file is there and opens the restored vault; False: not there yet; VaultError: a wrong file."""
    if not key_file.exists():
        return False
    if stored_checks:  # (a shop that never started has no key yet: any key file will do)
        open_key_ring(key_file, stored_checks)
    return True


async def run_backup(settings: Settings, file: Path) -> int:
    """`kamibot backup FILE`."""
    key_file = settings.resolved_key_file
    try:
        database = sqlite_path(settings)
    except ValueError as exc:
        raise ValueError(f"{exc}. {key_notice(key_file)}") from None
    copied = await asyncio.to_thread(backup_sqlite, database, file)
    print(f"backup written to {copied.path.resolve()} ({copied.size} bytes, schema version {copied.schema_version})")
    print(key_notice(key_file))
    return 0


async def run_restore(settings: Settings, file: Path) -> int:
    """`kamibot restore FILE`: into the configured, empty data dir; a key file already there must fit."""
    key_file = settings.resolved_key_file
    try:
        database = sqlite_path(settings)
    except ValueError as exc:
        raise ValueError(f"{exc}. {key_notice(key_file)}") from None
    copied = await asyncio.to_thread(restore_sqlite, file, database, settings.data_dir, key_file)
    store = await open_store(settings, migrate=False)
    try:
        stored_checks = await store.vault_key_checks()
    finally:
        await store.close()
    try:
        key_there = check_key_file(key_file, stored_checks)
    except VaultError as exc:
        discard_restored(database)
        raise VaultError(f"{exc}; nothing restored") from None
    print(f"restored {file} into {copied.path.resolve()} (schema version {copied.schema_version})")
    print(f"The vault key is not in the backup: the shop reads it from {key_file.resolve()} "
          "(KAMIBOT_VAULT_KEY_FILE).")
    if key_there:
        print("That key file opens the restored vault: `kamibot run` starts the shop.")
    else:
        print("No key file is there yet: copy this shop's vault key file there before `kamibot run` "
              "(without it the shop refuses to start and no code can be decrypted).")
    return 0
