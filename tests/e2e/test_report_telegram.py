"""The merchant's /report over the real Telegram adapter (PTB against the fake Bot API): the summary as a
message, the three charts as sendPhoto multipart uploads whose bytes are PNGs, and the XLSX as a sendDocument
upload holding the report module's figures; a non-merchant gets none of it."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
from openpyxl import load_workbook
from PIL import Image

from fulfillment.money_report import COLUMNS, MoneyReports
from tests.e2e.test_telegram import CUSTOMER, MERCHANT, _buy_to_invoice, _pay, _say, running_bot


async def test_report_charts_and_xlsx_reach_the_merchant_as_uploads(tmp_path, fake):
    async with running_bot(tmp_path, fake) as bot:
        ref = await _buy_to_invoice(fake)
        await _pay(fake, CUSTOMER, ref, 45, "charge-r1")
        await fake.wait_for("sendMessage", lambda p: int(p["chat_id"]) == CUSTOMER and "<code>" in p["text"])
        fake.send_text(MERCHANT, "/report 7d by channel xlsx")
        # the summary, the charts and the file go out once all are drawn (a busy test machine: a generous wait)
        doc = await fake.wait_for("sendDocument", lambda p: int(p["chat_id"]) == MERCHANT, timeout=90)
        assert [p["text"] for p in fake.sent("sendMessage") if int(p["chat_id"]) == MERCHANT][-1].startswith("Sales ")
        photos = [p for p in fake.sent("sendPhoto") if int(p["chat_id"]) == MERCHANT]
        assert [p["caption"] for p in photos] == ["Revenue and profit over time", "Profit by channel", "Top SKUs"]
        for p in photos:
            with Image.open(io.BytesIO(p["photo"]["content"])) as image:
                assert image.format == "PNG"
                assert image.size[0] == 800
        today = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date()
        assert doc["document"]["filename"] == f"report-{today - timedelta(days=6)}-{today}-by-channel.xlsx"
        rows = list(load_workbook(io.BytesIO(doc["document"]["content"])).active.iter_rows(values_only=True))
        rep = await MoneyReports(bot.shop.store).report(today - timedelta(days=6), today + timedelta(days=1),
                                                        "channel")
        assert [list(r[: len(COLUMNS)]) for r in rows[2:]] == [[x.as_dict()[c] for c in COLUMNS]
                                                              for x in [*rep.rows, *rep.totals]]
        assert ("telegram", "XTR", 1, 45) in [r[:4] for r in rows]
        await _say(fake, CUSTOMER, "/report 7d xlsx", "")  # a customer: the menu, no report
        assert not [p for p in fake.sent("sendPhoto") if int(p["chat_id"]) == CUSTOMER]


async def test_the_fake_bot_api_takes_a_png_upload_and_refuses_what_is_no_image(fake):
    png = io.BytesIO()
    Image.new("RGB", (800, 320), "white").save(png, format="PNG")
    async with httpx.AsyncClient(base_url=f"{fake.base_url}{fake.token}/") as client:
        sent = await client.post("sendPhoto", data={"chat_id": str(MERCHANT), "caption": "chart"},
                                 files={"photo": ("chart.png", png.getvalue(), "image/png")})
        assert sent.status_code == 200
        sizes = sent.json()["result"]["photo"]
        assert (sizes[-1]["width"], sizes[-1]["height"]) == (800, 320)
        bad = await client.post("sendPhoto", data={"chat_id": str(MERCHANT)},
                                files={"photo": ("chart.png", b"not an image", "image/png")})
        assert bad.status_code == 400
        assert bad.json()["description"] == "Bad Request: IMAGE_PROCESS_FAILED"
