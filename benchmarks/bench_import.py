"""1,000,000 generated codes through `kamibot codes import` into SQLite and PostgreSQL: seconds and peak RSS,
beside a bare baseline in the same run (the same codes HMAC'd + AES-GCM encrypted and bulk-inserted into a
bare table with a unique HMAC index: executemany in 10k batches on SQLite, COPY on PostgreSQL).

    python benchmarks/bench_import.py [--codes 1000000] [--no-pg]

Prints one JSON line. Targets (issue #3): at most 1.5x the baseline on each backend, peak RSS under 120 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG_DSN = os.environ.get("KAMIBOT_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
BATCH = 10_000


def generate(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for _ in range(n // 10_000 + 1):
            fh.write("".join(f"GEN-{secrets.token_hex(8).upper()}\n" for _ in range(10_000)))
    with path.open("r+", encoding="utf-8") as fh:  # trim to exactly n lines
        lines = 0
        while lines < n and fh.readline():
            lines += 1
        fh.truncate(fh.tell())


def _sealed(path: Path):  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key, mac = AESGCM.generate_key(bit_length=256), secrets.token_bytes(32)
    cipher = AESGCM(key)
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            code = line.strip().encode()
            digest = hmac.digest(mac, code, "sha256")
            nonce = os.urandom(12)
            yield digest, nonce, cipher.encrypt(nonce, code, digest)


def baseline_sqlite(codes: Path, db_path: Path) -> None:
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("CREATE TABLE codes (id INTEGER PRIMARY KEY, digest BLOB NOT NULL UNIQUE, nonce BLOB, ct BLOB)")
    batch = []
    for row in _sealed(codes):
        batch.append(row)
        if len(batch) == BATCH:
            db.execute("BEGIN")
            db.executemany("INSERT INTO codes (digest, nonce, ct) VALUES (?,?,?)", batch)
            db.execute("COMMIT")
            batch.clear()
    if batch:
        db.executemany("INSERT INTO codes (digest, nonce, ct) VALUES (?,?,?)", batch)
    db.close()


async def baseline_pg(codes: Path, dsn: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    await conn.execute("CREATE TABLE bare_codes (id BIGSERIAL PRIMARY KEY, digest BYTEA NOT NULL UNIQUE,"
                       " nonce BYTEA, ct BYTEA)")
    batch = []
    for row in _sealed(codes):
        batch.append(row)
        if len(batch) == BATCH:
            await conn.copy_records_to_table("bare_codes", records=batch, columns=["digest", "nonce", "ct"])
            batch.clear()
    if batch:
        await conn.copy_records_to_table("bare_codes", records=batch, columns=["digest", "nonce", "ct"])
    await conn.close()


def measure(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(seconds, peak RSS MB) of one child process, from wait4's rusage."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{argv[:4]} failed: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
    return elapsed, usage.ru_maxrss / 1024


def kamibot_import(data: Path, db_url: str, codes: Path) -> tuple[float, float]:
    env = {"KAMIBOT_DATA_DIR": str(data), "KAMIBOT_DATABASE_URL": db_url, "KAMIBOT_LOG_LEVEL": "WARNING",
           "PYTHONPATH": str(ROOT)}
    catalog = data / "shop.toml"
    catalog.write_text('[[category]]\nslug = "c"\nname_en = "C"\nname_zh = "C"\n'
                       '[[pool]]\nslug = "bench"\nname = "bench"\n')
    subprocess.run([sys.executable, "-m", "bot", "catalog", "load", str(catalog)], env={**os.environ, **env},
                   check=True, capture_output=True)
    return measure([sys.executable, "-m", "bot", "codes", "import", "bench", str(codes), "--json"], env)


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN)
    await conn.execute(sql)
    await conn.close()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--baseline":
        kind, codes, target = sys.argv[2:5]
        if kind == "sqlite":
            baseline_sqlite(Path(codes), Path(target))
        else:
            asyncio.run(baseline_pg(Path(codes), target))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--codes", type=int, default=1_000_000)
    ap.add_argument("--no-pg", action="store_true")
    args = ap.parse_args()
    figures: dict[str, float | int] = {"codes": args.codes}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        codes = base / "codes.txt"
        generate(codes, args.codes)
        me = [sys.executable, __file__, "--baseline"]
        figures["sqlite_baseline_s"], figures["sqlite_baseline_rss_mb"] = measure(
            [*me, "sqlite", str(codes), str(base / "bare.db")])
        data = base / "sqlite"
        data.mkdir()
        figures["sqlite_import_s"], figures["sqlite_import_rss_mb"] = kamibot_import(
            data, f"sqlite:///{data / 'shop.db'}", codes)
        if not args.no_pg:
            names = ["kbimp_" + secrets.token_hex(4) for _ in range(2)]
            for name in names:
                asyncio.run(_admin(f"CREATE DATABASE {name}"))
            try:
                dsn = [PG_DSN.rsplit("/", 1)[0] + "/" + n for n in names]
                figures["pg_baseline_s"], figures["pg_baseline_rss_mb"] = measure([*me, "pg", str(codes), dsn[0]])
                data = base / "pg"
                data.mkdir()
                figures["pg_import_s"], figures["pg_import_rss_mb"] = kamibot_import(data, dsn[1], codes)
            finally:
                for name in names:
                    asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    for backend in ("sqlite", "pg"):
        if f"{backend}_import_s" in figures:
            figures[f"{backend}_ratio"] = figures[f"{backend}_import_s"] / figures[f"{backend}_baseline_s"]
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
