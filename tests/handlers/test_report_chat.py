"""The merchant's /report and /dashboard in chat (console demo shop, real SQLite): a text summary plus three PNG
charts, the XLSX/CSV as a file on request holding the report module's figures, a usage answer for bad input; the
dashboard link when the HTTP app is there and a clear answer when it is not; WeChat's text fallback for charts and
spreadsheets."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from openpyxl import load_workbook
from PIL import Image

from fulfillment.money_report import COLUMNS, MoneyReports
from handlers.types import Document, Reply
from handlers.wechat.render import WeChatRenderer
from locales import Translator
from tests.handlers.test_merchant_report import _sold


def files(text: str, kind: str) -> list[Path]:
    return [Path(p) for p in re.findall(rf"\[{kind}\] (\S+)", text)]


def today() -> date:
    return datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date()


async def test_report_sends_three_charts_and_the_xlsx_on_request(demo):
    await _sold(demo)
    await demo.merchant.say("/report 30d by channel xlsx")
    text = demo.out.text()
    assert text.startswith("Sales ")
    images = files(text, "image")
    assert len(images) == 3
    for path in images:
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.size[0] == 800
    for title in ("Revenue and profit over time", "Profit by channel", "Top SKUs"):
        assert title in text
    (sheet_file,) = files(text, "file")
    assert sheet_file.name == f"report-{today() - timedelta(days=29)}-{today()}-by-channel.xlsx"
    rep = await MoneyReports(demo.shop.store).report(today() - timedelta(days=29), today() + timedelta(days=1),
                                                     "channel")
    rows = list(load_workbook(sheet_file).active.iter_rows(values_only=True))
    assert [list(r[: len(COLUMNS)]) for r in rows[2:]] == [[x.as_dict()[c] for c in COLUMNS]
                                                          for x in [*rep.rows, *rep.totals]]


async def test_report_csv_and_bad_arguments(demo):
    await _sold(demo)
    await demo.merchant.say("/report today csv")
    (csv_file,) = files(demo.out.text(), "file")
    parsed = list(csv.DictReader(io.StringIO(csv_file.read_bytes().decode("utf-8-sig"))))
    assert parsed[-1]["group"] == "total"
    assert parsed[-1]["revenue"] == "600"
    demo.out.clear()
    await demo.merchant.say("/report 30d by channel pdf")
    assert "usage: /report" in demo.out.text()
    assert files(demo.out.text(), "image") == []
    demo.out.clear()
    await demo.merchant.say("/report 2020-01 xlsx")
    assert demo.out.text() == "No sales in this period."


async def test_dashboard_link_or_a_clear_answer(demo):
    await demo.merchant.say("/dashboard")
    assert "HTTP server" in demo.out.text()
    demo.out.clear()
    asked = []
    demo.merchant.ctx.dashboard_link = lambda first, last, lang: asked.append((first, last, lang)) or "http://x/d?s"
    await demo.merchant.say("/dashboard 7d")
    assert asked == [(today() - timedelta(days=6), today() + timedelta(days=1), "en")]
    assert demo.out.text() == (f"Dashboard {today() - timedelta(days=6)} – {today()} (the link works for 10 minutes):"
                               "\nhttp://x/d?s")
    demo.out.clear()
    await demo.stranger.say("/dashboard")
    assert "http" not in demo.out.text()
    assert len(asked) == 1


def test_wechat_shows_text_for_charts_and_spreadsheets():
    renderer = WeChatRenderer(Translator("en"))
    chart = renderer.render([Reply("Top SKUs", photo=b"\x89PNG...")], "en").messages
    assert chart == ["📈 Top SKUs: see the chart on the dashboard (/dashboard)."]
    sheet = renderer.render([Reply("The report as a file: r.xlsx", document=Document("r.xlsx", b"PK\x03\x04\xff"))],
                            "en").messages
    assert sheet == ["The report as a file: r.xlsx\n(The file r.xlsx cannot be shown here: use kamibot report or the"
                     " dashboard.)"]
    codes = renderer.render([Reply("Your codes", document=Document("A1.txt", b"CODE-1\nCODE-2\n"))], "en").messages
    assert codes == ["Your codes\nCODE-1\nCODE-2"]
