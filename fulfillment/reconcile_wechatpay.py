"""WeChat Pay reconciliation: one day's ALL trade bill (payments and refunds) against the shop's payment events.

`GET /v3/bill/tradebill?bill_date=…&bill_type=ALL&tar_type=GZIP` answers (signed) a download URL and the SHA1 of
the *uncompressed* bill (https://pay.weixin.qq.com/doc/v3/merchant/4012556654, "原始账单(gzip需要解压缩)的摘要值").
The file (https://pay.weixin.qq.com/docs/merchant/products/bill-download/format-trade.html): a header row, detail
rows whose every field starts with a backtick, a summary header (总交易单数,…) and a summary row; amounts in yuan.
ALL columns: 交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,
货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,
手续费,费率,订单金额,申请退款金额,费率备注. A payment row's 交易状态 is SUCCESS (or REVOKED), a refund's REFUND.

The bill is read as a stream (gzip → UTF-8 → lines), so 100,000 rows cost the memory of the shop's side only;
nothing is written until the whole file has been read, its hash matches and every row is well formed.
"""

from __future__ import annotations

import codecs
import hashlib
import hmac
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation

import httpx

from fulfillment.reconcile import Findings, Kind, ReconcileError, day_window
from fulfillment.wechatpay import WeChatPayClient, WeChatPayError, order_ref_of
from storage.protocol import Store
from storage.protocols.reconcile import FeeActual, NewDiscrepancy, ShopPayment

SOURCE = PROVIDER = "wechatpay"
BEIJING = timedelta(hours=8)
BEIJING_TZ = timezone(BEIJING, "Asia/Shanghai")
BILL_READY_HOUR = 10  # Beijing time: yesterday's bill exists from then
MAX_AGE_DAYS = 90  # "仅支持三个月内的账单下载申请"
SUMMARY_HEADER = "总交易单数"
KNOWN_COLUMNS = frozenset((
    "交易时间", "公众账号ID", "商户号", "特约商户号", "设备号", "微信订单号", "商户订单号", "用户标识",
    "交易类型", "交易状态", "付款银行", "货币种类", "应结订单金额", "代金券金额", "退款申请时间",
    "退款成功时间", "微信退款单号", "商户退款单号", "退款金额", "充值券退款金额", "退款类型",
    "退款状态", "商品名称", "商户数据包", "手续费", "费率", "订单金额", "申请退款金额", "费率备注"))
NEEDED = ("交易时间", "微信订单号", "商户订单号", "交易状态", "货币种类", "订单金额", "手续费", "退款金额")
PAYMENT_STATES = ("SUCCESS", "REVOKED")
CHUNK = 1 << 16


class BillError(ReconcileError):
    def __init__(self, detail: str) -> None:
        super().__init__("reconcile.bad_bill", detail, reason=detail[:120])


@dataclass(frozen=True, slots=True)
class BillRow:
    txn: str  # 微信订单号
    trade_no: str  # 商户订单号
    state: str  # 交易状态
    amount: int  # 订单金额, fen
    fee: int  # 手续费, fen (negative on a refund row)
    refund: int  # 退款金额, fen


def fen(text: str, what: str, line: int) -> int:
    """Yuan as written in the bill to fen, exactly: '10.00' → 1000, '-0.06' → -6 (Decimal for any other form)."""
    whole, dot, cents = text.partition(".")
    digits = whole[1:] if whole[:1] == "-" else whole
    if dot and len(cents) == 2 and digits.isdigit() and cents.isdigit() and digits.isascii() and cents.isascii():
        value = int(digits) * 100 + int(cents)
        return -value if whole[:1] == "-" else value
    try:
        exact = Decimal(text) * 100
    except InvalidOperation:
        raise BillError(f"line {line}: {what} {text[:20]!r} is not an amount") from None
    if not exact.is_finite() or exact != exact.to_integral_value():
        raise BillError(f"line {line}: {what} {text[:20]!r} is not whole fen")
    return int(exact)


class BillReader:
    """Feed the uncompressed bytes as they come; rows come out; `finish` checks the hash and the summary."""

    def __init__(self, day: date, sha1: str, currency: str = "CNY") -> None:
        self.day = day.isoformat()
        self.expected = sha1.lower()
        self.currency = currency
        self.hash = hashlib.sha1()  # noqa: S324 - the algorithm WeChat Pay names
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.rest = ""
        self.line = 0
        self.cols: dict[str, int] = {}
        self.width = 0
        self.rows = 0
        self.summary: dict[str, str] | None = None
        self._summary_header: list[str] | None = None

    def feed(self, data: bytes, final: bool = False) -> Iterator[BillRow]:
        self.hash.update(data)
        try:
            text = self.rest + self.decoder.decode(data, final)
        except UnicodeDecodeError:
            raise BillError("the bill is not UTF-8") from None
        lines = text.split("\n")
        self.rest = "" if final else lines.pop()
        for raw in lines:
            row = self._line(raw.rstrip("\r"))
            if row is not None:
                yield row

    def _line(self, text: str) -> BillRow | None:
        self.line += 1
        if not text.strip():
            return None
        if self.summary is not None:
            raise BillError(f"line {self.line}: text after the summary")
        fields = text.split(",")
        if not self.cols:
            self._header(fields)
            return None
        if self._summary_header is not None:
            self.summary = dict(zip(self._summary_header, (f.removeprefix("`") for f in fields), strict=False))
            return None
        if fields[0] == SUMMARY_HEADER:
            self._summary_header = fields
            return None
        return self._row(fields)

    def _header(self, fields: list[str]) -> None:
        names = [f.strip() for f in fields]
        unknown = [n for n in names if n not in KNOWN_COLUMNS]
        if unknown:
            raise BillError(f"unknown column {unknown[0][:20]!r}")
        missing = [n for n in NEEDED if n not in names]
        if missing:
            raise BillError(f"the header lacks {missing[0]!r}")
        self.cols = {n: i for i, n in enumerate(names)}
        self.width = len(names)

    def _row(self, f: list[str]) -> BillRow:
        """A detail row (fields still backtick-prefixed; only the ones read are stripped)."""
        if len(f) != self.width:
            raise BillError(f"line {self.line}: {len(f)} fields, the header has {self.width}")
        c, n = self.cols, self.line
        self.rows += 1
        currency = f[c["货币种类"]].removeprefix("`")
        if currency != self.currency:
            raise BillError(f"line {n}: currency {currency[:8]!r}, the shop reconciles {self.currency}")
        when = f[c["交易时间"]].removeprefix("`")
        if when[:10] != self.day:
            raise BillError(f"line {n}: dated {when[:19]!r} in the bill of {self.day}")
        state = f[c["交易状态"]].removeprefix("`")
        refund = fen(f[c["退款金额"]].removeprefix("`"), "退款金额", n) if state == "REFUND" else 0
        return BillRow(f[c["微信订单号"]].removeprefix("`"), f[c["商户订单号"]].removeprefix("`"), state,
                       fen(f[c["订单金额"]].removeprefix("`"), "订单金额", n),
                       fen(f[c["手续费"]].removeprefix("`"), "手续费", n), refund)

    def finish(self) -> None:
        for _ in self.feed(b"", final=True):
            raise BillError("a row after the end")  # pragma: no cover - feed(final) yields no rows after summary
        if not self.cols:
            raise BillError("the bill is empty")
        if self.summary is None:
            raise BillError("the bill has no summary row (cut short?)")
        if not hmac.compare_digest(self.hash.hexdigest(), self.expected):
            raise BillError("the bill does not match its SHA1 hash")
        count = self.summary.get(SUMMARY_HEADER, "")
        if not count.isdigit() or int(count) != self.rows:
            raise BillError(f"the summary counts {count[:12]!r} rows, the bill has {self.rows}")


def gunzip(raw: bytes) -> Iterator[bytes]:
    """The uncompressed bill in pieces; a truncated or corrupt gzip raises BillError."""
    inflate = zlib.decompressobj(wbits=31)
    try:
        for start in range(0, len(raw), CHUNK):
            piece = inflate.decompress(raw[start:start + CHUNK])
            if piece:
                yield piece
        tail = inflate.flush()
    except zlib.error:
        raise BillError("the gzip file is corrupt") from None
    if tail:
        yield tail
    if not inflate.eof:
        raise BillError("the gzip file is truncated")


class BillMatcher:
    """Bill rows against the shop's payments of the same Beijing day, streaming."""

    def __init__(self, store: Store, day: date, shop: dict[str, ShopPayment], shop_refunds: dict[str, int]) -> None:
        self.store = store
        self.period = day.isoformat()
        self.shop = shop  # txn -> payment; matched ones are taken out
        self.shop_refunds = shop_refunds
        self.bill_refunds: dict[str, int] = defaultdict(int)
        self.refund_refs: dict[str, str] = {}
        self.found: list[NewDiscrepancy] = []
        self.fees: list[FeeActual] = []

    def _d(self, kind: Kind, ref: str, order_ref: str, expected: int | None, actual: int | None,
           detail: str = "") -> None:
        self.found.append(NewDiscrepancy(SOURCE, kind.value, ref, order_ref, "CNY", expected, actual, detail,
                                         self.period))

    async def row(self, row: BillRow) -> None:
        if row.state == "REFUND":
            self.bill_refunds[row.txn] += row.refund
            self.refund_refs[row.txn] = order_ref_of(row.trade_no)
            return
        mine = self.shop.pop(row.txn, None) or await self.store.shop_payment(PROVIDER, row.txn)
        ref = order_ref_of(row.trade_no)
        if mine is None:
            self._d(Kind.MISSING_IN_SHOP, row.txn, ref, None, row.amount, f"trade {row.trade_no[:32]}")
            return
        if mine.amount != row.amount or mine.currency != "CNY":
            self._d(Kind.AMOUNT_MISMATCH, row.txn, mine.order_ref, mine.amount, row.amount)
        self.fees.append(FeeActual(row.txn, max(row.fee, 0)))

    def finish(self) -> None:
        for txn, payment in self.shop.items():
            self._d(Kind.MISSING_AT_PROVIDER, txn, payment.order_ref, payment.amount, None)
        for txn in sorted(set(self.bill_refunds) | set(self.shop_refunds)):
            shop, bill = self.shop_refunds.get(txn, 0), self.bill_refunds.get(txn, 0)
            if shop != bill:
                self._d(Kind.REFUND_MISMATCH, txn, self.refund_refs.get(txn, ""), shop, bill)


async def shop_side(store: Store, day: date) -> BillMatcher:
    """A matcher holding the shop's WeChat Pay payments and refunds of one Beijing day."""
    since, until = day_window(day, BEIJING_TZ)
    shop = {p.txn: p for p in await store.shop_payments(PROVIDER, since, until)}
    refunds: dict[str, int] = defaultdict(int)
    for r in await store.shop_refunds(PROVIDER, since, until):
        refunds[r.txn] += r.amount
    return BillMatcher(store, day, shop, refunds)


async def reconcile_bill(store: Store, day: date, raw_gzip: bytes, sha1: str) -> Findings:
    """Read a downloaded bill (gzip bytes and the hash the signed answer gave) and compare it with the shop."""
    matcher = await shop_side(store, day)
    reader = BillReader(day, sha1)
    checked = 0
    for piece in gunzip(raw_gzip):
        for row in reader.feed(piece):
            await matcher.row(row)
            checked += 1
    reader.finish()
    matcher.finish()
    return Findings(checked, matcher.found, matcher.fees, PROVIDER)


class WeChatPayBills:
    """The `wechatpay` reconciliation source (days are Beijing days)."""

    def __init__(self, store: Store, client: WeChatPayClient) -> None:
        self.store = store
        self.client = client

    async def collect(self, day: date, zone: tzinfo) -> Findings:
        del zone  # bills are cut at Beijing midnight whatever the shop's display timezone
        today = (self.client.clock() + BEIJING).date()
        if (today - day).days > MAX_AGE_DAYS:
            raise ReconcileError("reconcile.too_old", f"WeChat Pay keeps bills for {MAX_AGE_DAYS} days",
                                 date=day.isoformat())
        try:
            raw, sha1 = await self.client.trade_bill_gzip(day)
        except WeChatPayError as exc:
            if exc.code == "NO_STATEMENT_EXIST":  # no trade that day: an empty bill
                return await self._empty(day)
            raise ReconcileError("reconcile.provider_failed", f"WeChat Pay: {exc.code}", error=exc.code) from None
        except httpx.HTTPError as exc:
            raise ReconcileError("reconcile.provider_failed", f"WeChat Pay: {type(exc).__name__}",
                                 error=type(exc).__name__) from None
        return await reconcile_bill(self.store, day, raw, sha1)

    async def _empty(self, day: date) -> Findings:
        matcher = await shop_side(self.store, day)
        matcher.finish()
        return Findings(0, matcher.found, [], PROVIDER)

