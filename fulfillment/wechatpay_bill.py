"""The daily trade bill: every payment WeChat Pay took yesterday, checked against what the shop recorded.

A second line behind the notifications and the watch list: a SUCCESS row whose `transaction_id` the shop never
recorded is queried by its out_trade_no and applied through the notification path (so an order's second payment
goes back like any other). Trade numbers map to orders as everywhere (`{ref}-J`, `{ref}-N`, or a bare ref); rows of
other systems sharing the merchant number are skipped.

File format (https://pay.weixin.qq.com/docs/merchant/products/bill-download/format-trade.html): comma separated, a
header row, detail rows whose every field starts with a backtick, then a summary header and a summary row; amounts
in yuan. Bills exist from 10:00 Beijing time for the day before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation

import httpx

from fulfillment.wechatpay import WeChatPayClient, WeChatPayError, order_ref_of
from fulfillment.wechatpay_notify import PROVIDER, NotifyRejected, WeChatPayNotifications
from storage.protocol import Store

log = logging.getLogger("kamibot.wechatpay")
BEIJING = timedelta(hours=8)
BILL_READY_HOUR = 10  # Beijing time, for the day before
DONE_KEY = "wechatpay.bill.done."
SUMMARY_HEADER = "总交易单数"


class BillFormatError(ValueError):
    pass


@dataclass(frozen=True)
class BillRow:
    trade_no: str  # 商户订单号
    transaction_id: str  # 微信订单号
    state: str  # 交易状态
    amount: int  # 订单金额, in fen
    currency: str  # 货币种类


def _fen(yuan: str) -> int:
    try:
        value = Decimal(yuan) * 100
    except InvalidOperation:
        raise BillFormatError(f"amount {yuan[:20]!r}") from None
    if value != value.to_integral_value():
        raise BillFormatError(f"amount {yuan[:20]!r} is not whole fen")
    return int(value)


def parse_trade_bill(text: str) -> list[BillRow]:
    """Detail rows of a trade bill, by the header's column names (their order is not promised)."""
    lines = [line.rstrip("\r") for line in text.lstrip("\ufeff").split("\n") if line.strip()]
    if not lines:
        return []
    header = [name.strip() for name in lines[0].split(",")]
    try:
        cols = {key: header.index(name) for key, name in (("trade_no", "商户订单号"), ("txn", "微信订单号"),
                                                           ("state", "交易状态"), ("amount", "订单金额"),
                                                           ("currency", "货币种类"))}
    except ValueError:
        raise BillFormatError("header lacks a column") from None
    rows = []
    for line in lines[1:]:
        if line.startswith(SUMMARY_HEADER):
            break
        fields = [f.removeprefix("`") for f in line.split(",")]
        if len(fields) < len(header):
            raise BillFormatError("short row")
        rows.append(BillRow(fields[cols["trade_no"]], fields[cols["txn"]], fields[cols["state"]],
                            _fen(fields[cols["amount"]]), fields[cols["currency"]]))
    return rows


class TradeBillCheck:
    def __init__(self, store: Store, client: WeChatPayClient, notifications: WeChatPayNotifications,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.client = client
        self.notifications = notifications
        self.clock = clock

    def due_day(self) -> date | None:
        """Yesterday in Beijing once its bill can exist (10:00 Beijing)."""
        local = self.clock().astimezone(UTC) + BEIJING
        return local.date() - timedelta(days=1) if local.hour >= BILL_READY_HOUR else None

    async def run_once(self) -> int:
        """Check the due day's bill once (the caller holds the reconciliation lease); payments applied."""
        day = self.due_day()
        if day is None or await self.store.kv_get(DONE_KEY + day.isoformat(), self.clock()):
            return 0
        applied = await self.check(day)
        if applied is None:
            return 0
        await self.store.kv_put(DONE_KEY + day.isoformat(), "1", self.clock() + timedelta(days=3))
        return applied

    async def check(self, day: date) -> int | None:
        """One day's bill; None when it could not be read (tried again on the next pass)."""
        try:
            rows = parse_trade_bill((await self.client.trade_bill(day)).decode("utf-8-sig"))
        except httpx.HTTPError as exc:
            log.warning("event=wechatpay.bill_failed day=%s error=%s", day, type(exc).__name__)
            return None
        except WeChatPayError as exc:
            if exc.code == "NO_STATEMENT_EXIST":  # no payment that day
                return 0
            log.warning("event=wechatpay.bill_failed day=%s code=%s", day, exc.code)
            return None
        except (BillFormatError, UnicodeDecodeError) as exc:
            log.warning("event=wechatpay.bill_unreadable day=%s reason=%r", day, str(exc)[:60])
            return None
        applied = 0
        for row in rows:
            if row.state != "SUCCESS" or await self.store.payment_record(PROVIDER, row.transaction_id) is not None:
                continue
            if await self.store.order_by_ref(order_ref_of(row.trade_no)) is None:
                continue  # another system's trade under the same merchant number
            try:
                tx = await self.client.query(row.trade_no)
                outcome = await self.notifications.apply_transaction(tx)
            except (WeChatPayError, NotifyRejected, httpx.HTTPError) as exc:
                log.warning("event=wechatpay.bill_apply_failed day=%s error=%s", day, type(exc).__name__)
                return None
            log.warning("event=wechatpay.bill_found_payment day=%s outcome=%s", day, outcome)
            applied += 1
        log.info("event=wechatpay.bill_checked day=%s rows=%s applied=%s", day, len(rows), applied)
        return applied
