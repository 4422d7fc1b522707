"""Streaming code import from .txt (one code per line) or .csv (code, uses, expires_at, note).

The file is checked first (UTF-8, CSV header) so a bad file changes nothing;
then it is read line by line and written in batches: memory stays flat in the
file's size. Duplicates are told apart by the vault's unique HMAC index (within
this file vs. already in the vault), not by an in-memory set.
"""

from __future__ import annotations

import codecs
import csv
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fulfillment.errors import ImportRefused
from fulfillment.vault import MAX_CODE_LENGTH, Vault, normalise_code
from fulfillment.wholenumbers import parse_whole
from storage.protocol import Store
from storage.records import BatchStats, NewCode, Pool

log = logging.getLogger("kamibot.import")
MAX_USES = 10_000
MAX_UNIT_COST = 100_000_000  # minor units, like a price
# rows per transaction: each touches most leaves of the random HMAC index, so bigger is cheaper, but a batch is held
# whole in memory: 1,000,000 codes into SQLite (bench_import.py) at 50,000 took 11.2-12.4 s and 121 MB peak RSS, at
# 25,000 12.9-13.3 s and 111 MB (target < 120 MB; the bare executemany baseline takes ~15 s)
BATCH = 25_000
Progress = Callable[[int, int], None]  # (lines read, lines in file)


@dataclass(frozen=True)
class ImportSource:
    path: Path
    kind: str  # "txt" | "csv"


def parse_unit_cost(raw: object) -> int:
    """The cost per code use a merchant types (`cost=N`, `--cost N`): whole minor units."""
    return parse_whole(raw, 0, MAX_UNIT_COST, ImportRefused, "cost in minor units")


def detect_kind(path: Path, explicit: str | None = None) -> str:
    kind = explicit or ("csv" if path.suffix.lower() == ".csv" else "txt")
    if kind not in ("txt", "csv"):
        raise ImportRefused(f"unknown import format {kind!r}: use txt or csv")
    return kind


def precheck(src: ImportSource) -> int:
    """Refuse before touching the vault: not UTF-8, or a CSV without a `code` column. Returns lines."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    chunk = b""
    try:
        with src.path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                decoder.decode(chunk)
                line += chunk.count(b"\n")
            decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        line += chunk[: max(exc.start, 0)].count(b"\n")
        raise ImportRefused(f"file is not UTF-8 text (line {line}); nothing imported", line=line) from None
    except OSError as exc:
        raise ImportRefused(f"cannot read {src.path.name}: {exc.strerror}") from None
    if src.kind == "csv":
        with src.path.open(encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh), [])
        if "code" not in [h.strip().lower() for h in header]:
            raise ImportRefused("CSV needs a 'code' column in its header; nothing imported")
    return line


def _rows(src: ImportSource) -> Iterator[tuple[int, dict[str, str] | str]]:
    """(line number, CSV fields or a plain code); blank lines are skipped.

    A .txt line that is already a plain printable ASCII code comes as a str: the batch seals those
    in one tight loop; everything else takes the careful path through `_parse`.
    """
    with src.path.open(encoding="utf-8-sig", newline="") as fh:
        if src.kind == "txt":
            for no, line in enumerate(fh, start=1):
                code = line.strip()
                if code.isascii() and code.isprintable() and 0 < len(code) <= MAX_CODE_LENGTH:
                    yield no, code
                elif code:
                    yield no, {"code": line}
            return
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader)]
        for row in reader:
            if any(cell.strip() for cell in row):
                yield reader.line_num, dict(zip(header, row, strict=False))


def _parse(vault: Vault, fields: dict[str, str]) -> NewCode:
    code = normalise_code(fields.get("code") or "")
    if len(fields) == 1:  # a .txt line: one use, no expiry, no note
        return vault.seal(code)
    uses_text = (fields.get("uses") or "").strip() or "1"
    if not uses_text.isdigit() or not 1 <= int(uses_text) <= MAX_USES:
        raise ValueError(f"uses must be a whole number from 1 to {MAX_USES}")
    expires_text = (fields.get("expires_at") or "").strip()
    expires = None
    if expires_text:
        try:
            expires = datetime.fromisoformat(expires_text)
        except ValueError:
            raise ValueError("expires_at must be an ISO date, e.g. 2027-01-31") from None
        expires = expires.replace(tzinfo=UTC) if expires.tzinfo is None else expires.astimezone(UTC)
    note = (fields.get("note") or "").strip()[:200]
    return vault.seal(code, int(uses_text), expires_at=expires, note=note)


async def import_codes(store: Store, vault: Vault, pool: Pool, src: ImportSource, *, supplier: str = "",
                       unit_cost: int = 0, currency: str = "CNY", progress: Progress | None = None,
                       batch_size: int = BATCH) -> BatchStats:
    if isinstance(unit_cost, bool) or not isinstance(unit_cost, int) or unit_cost < 0:
        raise ImportRefused("unit cost must be a non-negative integer in minor units")
    total_lines = precheck(src)
    batch_id = await store.create_batch(pool.id, supplier, unit_cost, currency, src.path.name)
    stats = BatchStats()
    pending: list[NewCode] = []

    async def flush() -> None:
        # strictly one batch at a time: overlapping encryption (GIL-bound) with SQLite's per-row GIL
        # releases starves the writer thread (convoy effect) and holds two batches in memory
        result = await store.insert_codes(batch_id, pool.id, pending)
        stats.imported += result.inserted
        stats.duplicate_in_vault += result.duplicate_in_vault
        stats.duplicate_in_batch += result.duplicate_in_batch
        pending.clear()

    plain: list[str] = []
    for line_no, fields in _rows(src):
        if isinstance(fields, str):
            plain.append(fields)
        else:
            try:
                pending.append(_parse(vault, fields))
            except ValueError as exc:
                stats.invalid.append((line_no, str(exc)))  # the reason only, never the line's text
        if len(pending) + len(plain) >= batch_size:
            pending += vault.seal_many(plain)
            plain = []
            await flush()
            if progress:
                progress(line_no, total_lines)
    pending += vault.seal_many(plain)
    if pending:
        await flush()
    if progress:
        progress(total_lines, total_lines)
    await store.finish_batch(batch_id, stats)
    log.info("event=codes.imported batch_id=%s pool_id=%s imported=%s dup_vault=%s dup_batch=%s invalid=%s",
             batch_id, pool.id, stats.imported, stats.duplicate_in_vault, stats.duplicate_in_batch,
             len(stats.invalid))
    return stats


class CodeImporter:
    """Code import as a service: conversations and adapters hand over a file, never the store."""

    def __init__(self, store: Store, vault: Vault) -> None:
        self.store = store
        self.vault = vault

    async def run(self, pool: Pool, src: ImportSource, *, supplier: str = "", unit_cost: int = 0,
                  currency: str = "CNY", progress: Progress | None = None) -> BatchStats:
        return await import_codes(self.store, self.vault, pool, src, supplier=supplier, unit_cost=unit_cost,
                                  currency=currency, progress=progress)
