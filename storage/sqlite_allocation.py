"""SQLite allocation: taking uses of a pool's codes (oldest first) and numbering them, inside a transaction body
of storage/sqlite_orders.py, sqlite_bulk.py or sqlite_tickets.py."""

from __future__ import annotations

import sqlite3
from typing import Any

from storage.records import EncryptedCode


def number_uses(db: sqlite3.Connection, code_ids: list[int]) -> list[int]:
    """Use numbers for claimed uses (one code id per use, in order): the smallest numbers no live item of
    that code holds. Not `uses_total - uses_left`: a refund can hand back a use from the middle."""
    live: dict[int, set[int]] = {cid: set() for cid in code_ids}
    distinct = sorted(live)
    for i in range(0, len(distinct), 400):
        part = distinct[i : i + 400]
        marks = ",".join("?" * len(part))
        for cid, use_no in db.execute(
            f"SELECT code_id, use_no FROM order_items WHERE released = 0 AND code_id IN ({marks})", part
        ):
            live[cid].add(use_no)
    numbers = []
    for cid in code_ids:
        n = 1
        while n in live[cid]:
            n += 1
        live[cid].add(n)
        numbers.append(n)
    return numbers


def take_uses(db: sqlite3.Connection, pool_id: int, need: int, at: str) -> list[tuple[int, int, str]]:
    """`need` uses (code id, unit cost, cost currency), oldest codes first, one use of each distinct code per
    round (a multi-use code gives one use per round). Under BEGIN IMMEDIATE nobody else writes, so the
    sub-select and the decrement cannot race. Use numbers come afterwards from `number_uses`."""
    return [(r[0], r[1], r[2]) for r in _take(db, pool_id, need, at, "")]


def take_code_uses(db: sqlite3.Connection, pool_id: int, need: int, at: str
                   ) -> list[tuple[int, int, str, EncryptedCode]]:
    """take_uses with each use's encrypted code (code id, unit cost, cost currency, code): for an answer that
    carries the codes, without reading them back."""
    return [(r[0], r[1], r[2], EncryptedCode(r[0], bytes(r[3]), r[4], bytes(r[5]), bytes(r[6])))
            for r in _take(db, pool_id, need, at, ", digest, key_id, nonce, ciphertext")]


def _take(db: sqlite3.Connection, pool_id: int, need: int, at: str, more: str) -> list[Any]:
    """Rows of (id, unit_cost, cost_currency, *more) by code id within each round."""
    taken: list[Any] = []
    while len(taken) < need:
        rows = db.execute(
            "UPDATE codes SET uses_left = uses_left - 1 WHERE id IN (SELECT id FROM codes WHERE pool_id = ?"
            " AND uses_left > 0 AND status = 'available' AND (expires_at IS NULL OR expires_at > ?)"
            f" ORDER BY id LIMIT ?) RETURNING id, unit_cost, cost_currency{more}",
            (pool_id, at, need - len(taken)),
        ).fetchall()
        if not rows:
            break
        taken.extend(sorted(rows, key=lambda r: int(r[0])))
    return taken


def _claim_uses(db: sqlite3.Connection, pool_id: int, need: int, at: str) -> list[tuple[int, int, int, str]]:
    """Take `need` uses as (code id, use no, unit cost, cost currency)."""
    claimed = take_uses(db, pool_id, need, at)
    numbers = number_uses(db, [c[0] for c in claimed])
    return [(cid, n, cost, ccy) for (cid, cost, ccy), n in zip(claimed, numbers, strict=True)]
