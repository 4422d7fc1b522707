"""`kamibot demo` end to end for the phone top-up: the customer types a number, pays, sees "recharging", and the
simulated supplier's answer settles the order (delivered; a number ending in 0000 fails and is refunded).

This needs the after-payment recharge path of branch `paidproc` (a recharge SKU reserves without own stock and a
paid recharge order goes to its supplier): on branch `recharge` alone the checkout answers "not enough stock".
Run it after both are merged.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.bot.test_cli import ROOT

# shop, simulated supplier, phone credit, ¥10, quantity 1, <number>, confirm, pay
SCRIPT = ["1", "3", "1", "1", "1", None, "1", "1"]


def _order(data: Path) -> tuple[object, ...] | None:
    try:
        with sqlite3.connect(data / "kamibot.db") as db:
            return db.execute("SELECT id, target, state FROM orders").fetchone()
    except sqlite3.OperationalError:  # not migrated yet, or busy for a moment
        return None


def _top_up(data: Path, number: str, final: set[str]) -> tuple[tuple[object, ...], str]:
    env = {**os.environ, "KAMIBOT_DATA_DIR": str(data), "KAMIBOT_DEFAULT_LANGUAGE": "en", "PYTHONPATH": str(ROOT)}
    env.pop("KAMIBOT_DATABASE_URL", None)
    with subprocess.Popen([sys.executable, "-m", "bot", "demo"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, cwd=data) as proc:
        assert proc.stdin is not None
        out, err, order = _drive(proc, data, number, final)
    assert proc.returncode == 0, err.decode()
    assert order is not None, out.decode()
    return order, out.decode()


def _drive(proc: subprocess.Popen[bytes], data: Path, number: str, final: set[str]
           ) -> tuple[bytes, bytes, tuple[object, ...] | None]:
    assert proc.stdin is not None
    try:
        for line in SCRIPT:
            proc.stdin.write(((line or number) + "\n").encode())
        proc.stdin.flush()
        started = time.monotonic()
        order = None
        while time.monotonic() < started + 30:  # the demo's background jobs ask the simulated supplier
            order = _order(data) if (data / "kamibot.db").exists() else None
            if (order is not None and order[2] in final) or (order is None and time.monotonic() > started + 10):
                break
            time.sleep(0.2)
        proc.stdin.write(b"/orders\n")
        out, err = proc.communicate(timeout=30)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return out, err, order


def test_demo_top_up_is_paid_recharged_and_delivered(tmp_path):
    order, out = _top_up(tmp_path, "+86 138 0013 8000", {"delivered", "refunded"})  # failed: on its way to refunded
    assert order[1:] == ("13800138000", "delivered")
    assert "Top up 13800138000 (China Mobile)" in out
    assert "138****8000" in out
    with sqlite3.connect(tmp_path / "kamibot.db") as db:
        assert db.execute("SELECT count(*) FROM payment_events WHERE order_ref IN (SELECT ref FROM orders)"
                          ).fetchone() == (1,)


def test_demo_top_up_that_the_supplier_fails_is_refunded(tmp_path):
    order, _ = _top_up(tmp_path, "13800130000", {"delivered", "refunded"})  # failed: on its way to refunded
    assert order[1:] == ("13800130000", "refunded")
