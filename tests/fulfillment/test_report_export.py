"""The report as files, on both backends: the XLSX read back with openpyxl and the CSV parsed back hold exactly the
report module's rows and totals (integer minor units), converted total labelled; another format is refused."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

import pytest
from openpyxl import load_workbook

from fulfillment.money_report import COLUMNS, MoneyReports
from fulfillment.report_export import export, to_xlsx
from tests.storage.test_reports_conformance import seed


def expected(report):
    return [[r.as_dict()[c] for c in COLUMNS] for r in [*report.rows, *report.totals]]


async def test_xlsx_and_csv_hold_the_report_figures(store):
    await seed(store)
    rep = await MoneyReports(store).report(date(2026, 11, 26), date(2026, 11, 28), "sku", "CNY",
                                           {"XTR": Decimal("13")})
    name, body = export(rep, "xlsx")
    assert name == "report-2026-11-26-2026-11-27-by-sku.xlsx"
    sheet = load_workbook(io.BytesIO(body)).active
    cells = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert cells[0][0].startswith("2026-11-26 – 2026-11-27 (Asia/Shanghai), by sku")
    assert list(cells[1]) == list(COLUMNS)
    n = len(rep.rows) + len(rep.totals)
    assert [r[: len(COLUMNS)] for r in cells[2: 2 + n]] == expected(rep)
    assert cells[2 + n][0] == "total (converted to CNY)"
    assert cells[2 + n][-1] == 2740 + 1300
    assert load_workbook(io.BytesIO(to_xlsx(rep))).active.max_row == len(cells)
    name, raw = export(rep, "csv")
    assert raw.startswith(b"\xef\xbb\xbf")
    assert name.endswith(".csv")
    parsed = list(csv.reader(io.StringIO(raw[3:].decode("utf-8"))))
    assert parsed[0] == list(COLUMNS)
    assert parsed[1: 1 + n] == [[str(v) for v in row] for row in expected(rep)]


async def test_unknown_format_is_refused(store):
    rep = await MoneyReports(store).report(date(2026, 11, 26), date(2026, 11, 28), "sku")
    with pytest.raises(ValueError, match="unknown export format"):
        export(rep, "pdf")
