"""`kamibot report`: the table, CSV and JSON carry the same figures (both backends, in process), the real command
reads a seeded SQLite shop, and bad input (--from after --to, unknown --by, bad rate) is an error that changes
nothing."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import date
from decimal import Decimal
from pathlib import Path

from openpyxl import load_workbook

from bot.report_cli import render_table
from fulfillment.money_report import COLUMNS, MoneyReports
from tests.bot.test_cli import kamibot
from tests.conftest import STATE_GROUPS
from tests.storage.test_reports_conformance import seed


def table_rows(text: str) -> list[list[str]]:
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in text.splitlines() if line.startswith("│")]
    return [r for r in rows if r and r[0] not in ("", "group")]


async def test_table_csv_and_json_agree(store):
    await seed(store)
    rep = await MoneyReports(store).report(date(2026, 11, 26), date(2026, 11, 28), "channel", "CNY",
                                           {"XTR": Decimal("13")})
    parsed_csv = list(csv.DictReader(io.StringIO(rep.as_csv())))
    parsed_json = json.loads(rep.as_json())
    from_json = [{c: str(r[c]) for c in COLUMNS} for r in [*parsed_json["rows"], *parsed_json["totals"]]]
    assert parsed_csv[:-1] == from_json
    assert [dict(zip(COLUMNS, r, strict=True)) for r in table_rows(render_table(rep))][:-1] == from_json
    assert parsed_csv[-1]["group"] == "total (converted to CNY)"
    assert {r["group"] for r in parsed_json["rows"]} == {"console", "telegram"}
    assert parsed_json["converted"]["profit"] == int(parsed_csv[-1]["profit"]) == 2740 + 1300


async def seed_file(path: Path) -> None:
    from storage.sqlite import SqliteStore

    s = await SqliteStore(path, states=STATE_GROUPS).open()
    try:
        await s.migrate()
        await seed(s)
    finally:
        await s.close()


def ledger_rows(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT COUNT(*) FROM ledger").fetchone()[0])
    finally:
        db.close()


async def test_kamibot_report_command(tmp_path: Path) -> None:
    assert kamibot(tmp_path, "codes", "stock").returncode == 0  # creates the database and the vault key
    await seed_file(tmp_path / "kamibot.db")
    before = ledger_rows(tmp_path / "kamibot.db")
    run = kamibot(tmp_path, "report", "--from", "2026-11-26", "--to", "2026-11-28", "--by", "sku", "--format", "json")
    assert run.returncode == 0, run.stderr.decode()
    data = json.loads(run.stdout)
    assert {t["currency"]: t["profit"] for t in data["totals"]} == {"CNY": 2740, "XTR": 100}
    as_csv = kamibot(tmp_path, "report", "--from", "2026-11-26", "--to", "2026-11-28", "--format", "csv")
    assert list(csv.DictReader(io.StringIO(as_csv.stdout.decode())))[-1]["profit"] == "100"
    table = kamibot(tmp_path, "report", "--from", "2026-11-26", "--to", "2026-11-28", "--by", "day")
    assert ["2026-11-27", "CNY", "1", "1000", "1000", "0", "0", "0", "0"] in table_rows(table.stdout.decode())
    sheet = kamibot(tmp_path, "report", "--from", "2026-11-26", "--to", "2026-11-28", "--by", "sku", "--format", "xlsx")
    assert sheet.returncode == 0, sheet.stderr.decode()
    rows = list(load_workbook(io.BytesIO(sheet.stdout)).active.iter_rows(values_only=True))
    assert [dict(zip(COLUMNS, r, strict=False)) for r in rows[2:]] == [*data["rows"], *data["totals"]]
    out = tmp_path / "r.xlsx"
    assert kamibot(tmp_path, "report", "--from", "2026-11-26", "--to", "2026-11-28", "--by", "sku", "--format", "xlsx",
                   "--output", str(out)).stdout == b""
    assert list(load_workbook(out).active.iter_rows(values_only=True)) == rows
    people = kamibot(tmp_path, "report", "--from", "2026-11-26", "--to", "2026-11-28", "--portrait", "--format", "json")
    assert json.loads(people.stdout)["customers"] == 4
    assert "new\t4" in kamibot(tmp_path, "report", "--from", "2026-11-26", "--to", "2026-11-28",
                               "--portrait").stdout.decode()
    for args, message in ((("--from", "2026-11-28", "--to", "2026-11-26"), "is not before"),
                          (("--by", "reseller"), "invalid choice"),
                          (("--from", "26.11.2026"), "not a date"),
                          (("--convert-to", "CNY", "--rate", "XTR=abc"), "not a rate")):
        bad = kamibot(tmp_path, "report", *args)
        assert bad.returncode == 2
        assert message in bad.stderr.decode()
        assert bad.stdout == b""
    assert ledger_rows(tmp_path / "kamibot.db") == before
