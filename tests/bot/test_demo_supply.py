"""`kamibot demo` with its simulated supplier, run as a real process: a code bought on demand is sold offline, and
the phone top-up dialog checks the number and shows its carrier before anything is ordered.

Paying for the top-up needs the after-payment recharge path (branch paidproc): tests/bot/test_demo_recharge_delivery.py.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from tests.bot.test_cli import kamibot

TO_SIMULATED = b"1\n3\n"  # shop, "Simulated supplier (demo)"


def _rows(data: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(data / "kamibot.db") as db:
        return db.execute(sql).fetchall()


def test_demo_sells_a_code_bought_on_demand_from_the_simulated_supplier(tmp_path):
    # product "Video VIP 1 week", SKU, quantity 1, confirm, pay
    result = kamibot(tmp_path, "demo", stdin=TO_SIMULATED + b"2\n1\n1\n1\n1\n")
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert "Simulated supplier (demo)" in out
    codes = re.findall(r"^\s{4}(DEMO-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4})$", out, re.MULTILINE)
    assert len(codes) == 1
    assert _rows(tmp_path, "SELECT state FROM orders") == [("delivered",)]
    assert _rows(tmp_path, "SELECT supplier, product_id, state, received FROM procurements") == [
        ("demo-sim", "video-week", "succeeded", 1)]


def test_demo_top_up_dialog_checks_the_number_and_shows_the_carrier(tmp_path):
    # product "Phone credit", SKU ¥10, quantity 1, then typed numbers
    result = kamibot(tmp_path, "demo", stdin=TO_SIMULATED + b"1\n1\n1\n138 0013 800\n+86 186-1234-5678\n2\n"
                                                            b"0086 138 0013 8000\n")
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert "Send the mainland China mobile number to top up (11 digits), or /cancel." in out
    assert "A mainland China mobile number has 11 digits." in out
    assert "Top up 18612345678 (China Unicom) with 1 × ¥10 credit for CN¥10.00?" in out
    assert "Top up 13800138000 (China Mobile) with 1 × ¥10 credit for CN¥10.00?" in out
    assert _rows(tmp_path, "SELECT count(*) FROM orders") == [(0,)]


def test_merchants_set_a_target_rule_on_the_command_line(tmp_path):
    assert kamibot(tmp_path, "catalog", "product", "credit", "--category", "phone", "--name-en", "Credit",
                   "--name-zh", "话费", "--pool", "topup").returncode == 0
    refused = kamibot(tmp_path, "catalog", "sku", "credit-10", "--product", "credit", "--pool", "topup",
                      "--name-en", "10", "--name-zh", "10", "--target", "re:(a+)+")
    assert refused.returncode == 2
    assert b"nests repeats" in refused.stderr
    assert _rows(tmp_path, "SELECT count(*) FROM skus") == [(0,)]
    assert kamibot(tmp_path, "catalog", "sku", "credit-10", "--product", "credit", "--pool", "topup",
                   "--name-en", "10", "--name-zh", "10", "--target", "mobile").returncode == 0
    assert _rows(tmp_path, "SELECT slug, target_rule FROM skus") == [("credit-10", "mobile")]
