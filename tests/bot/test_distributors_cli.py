"""`kamibot distributors …` as a real process: add, list and a statement as CSV; refusals exit 2 with the reason
and change nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.bot.test_cli import kamibot


def test_distributors_add_list_accrue_and_statement(tmp_path: Path) -> None:
    added = kamibot(tmp_path, "distributors", "add", "acme")
    assert added.returncode == 0, added.stderr.decode()
    assert added.stdout.decode().strip() == "acme: referral payload ref_acme"
    unknown = kamibot(tmp_path, "distributors", "add", "beta", "--client", "nobody")
    assert (unknown.returncode, unknown.stderr.decode().splitlines()[-1]) == (2, "kamibot: No API client nobody.")
    listed = kamibot(tmp_path, "distributors", "list").stdout.decode()
    assert listed == "acme\tref_acme\tclient=-\tdiscount=0bp\tcommission=0bp\tpayable -\n"
    out = tmp_path / "st.csv"
    assert kamibot(tmp_path, "distributors", "statement", "acme", "2026-11", "--out", str(out)).returncode == 0
    assert out.read_text().splitlines() == [
        "section,at_utc,kind,order_ref,sku_id,order_amount,amount,currency,balance_after,note,clawback,"
        "carried_clawback"]
    db = sqlite3.connect(tmp_path / "kamibot.db")
    try:
        assert db.execute("SELECT name FROM distributors").fetchall() == [("acme",)]
        assert ("distributor.add", "acme client=-") in db.execute("SELECT action, detail FROM audit_log").fetchall()
    finally:
        db.close()
