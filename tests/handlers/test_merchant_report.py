"""The merchant's /report through the report module: local periods (today, Nd, YYYY-MM), groupings, per-currency
totals, and a usage message for anything else."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from fulfillment.money_report import ReportError
from fulfillment.reports import chat_period


def test_chat_periods_are_local_days():
    today = date(2026, 12, 2)
    assert chat_period([], today) == (today, date(2026, 12, 3), "sku")
    assert chat_period(["7d", "by", "channel"], today) == (date(2026, 11, 26), date(2026, 12, 3), "channel")
    assert chat_period(["by", "day"], today) == (today, date(2026, 12, 3), "day")
    assert chat_period(["2026-02"], today) == (date(2026, 2, 1), date(2026, 3, 1), "sku")
    assert chat_period(["2026-12"], today) == (date(2026, 12, 1), date(2027, 1, 1), "sku")
    for bad in (["yesterday"], ["0d"], ["999d"], ["2026-13"], ["by"], ["7d", "by", "reseller"], ["7d", "x"]):
        with pytest.raises(ReportError):
            chat_period(bad, today)


async def _sold(demo):
    for step in ("/start", "1", "1", "1", "1", "1", "1", "1"):
        await demo.customer.say(step)
    demo.out.clear()


async def test_report_by_channel_and_month(demo):
    await _sold(demo)
    await demo.merchant.say("/report 30d by channel")
    text = demo.out.text()
    today = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date()
    assert text.startswith(f"Sales {date.fromordinal(today.toordinal() - 29)} – {today} (Asia/Shanghai), by channel:")
    assert "console · CNY · 1 orders · revenue CN¥6.00" in text
    assert "Total CNY: 1 orders · revenue CN¥6.00 · refunds CN¥0.00 · cost CN¥4.20 · fees CN¥0.00 · profit CN¥1.80" \
        in text
    demo.out.clear()
    await demo.merchant.say(f"/report {today:%Y-%m} by day")
    assert f"{today} · CNY · 1 orders" in demo.out.text()
    demo.out.clear()
    await demo.merchant.say("/report 2020-01")
    assert demo.out.text() == "No sales in this period."


async def test_report_bad_arguments_answer_the_usage(demo):
    await demo.merchant.say("/report last-week")
    assert re.search(r"usage: /report \[today\|7d\|30d\|YYYY-MM\]", demo.out.text())
    demo.out.clear()
    await demo.merchant.say("/report 7d by reseller")
    assert "usage: /report" in demo.out.text()
