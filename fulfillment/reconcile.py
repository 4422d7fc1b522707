"""Reconciliation (issue 16): the shop's payments, refunds and procurements checked against what WeChat Pay, Telegram
and each supplier recorded, one day at a time; what differs becomes a discrepancy, recorded once per source, kind
and reference, told to the merchants once and resolved by a merchant with a note.

A source (fulfillment/reconcile_wechatpay.py, reconcile_stars.py, reconcile_supplier.py) reads the other side
and compares; nothing is written until it has read everything and found it well formed, so a bad bill, a truncated
download or an unknown charge changes nothing but is answered with a clear reason (`ReconcileError`). Running a
day again finds the same discrepancies and records none twice; fee corrections are booked once ever.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from zoneinfo import ZoneInfo

from fulfillment.errors import ShopError
from storage.protocol import Store
from storage.protocols.reconcile import Discrepancy, FeeActual, NewDiscrepancy

__all__ = ["Discrepancy", "Findings", "Kind", "Outcome", "ReconcileError", "Reconciliation"]
log = logging.getLogger("kamibot.reconcile")
DAILY_LEASE = "reconcile.daily"
DONE_KEY = "reconcile.done."
MAX_LIST = 30
MAX_NOTE = 300


class Kind(StrEnum):
    MISSING_IN_SHOP = "missing_in_shop"  # the provider took money the shop has no record of
    MISSING_AT_PROVIDER = "missing_at_provider"  # the shop recorded a payment the provider does not list
    AMOUNT_MISMATCH = "amount_mismatch"
    REFUND_MISMATCH = "refund_mismatch"  # refunded amounts differ (a refund on one side only included)
    MISSING_AT_SUPPLIER = "missing_at_supplier"  # a procurement the supplier does not know
    EXTRA_AT_SUPPLIER = "extra_at_supplier"  # a supplier order the shop never made
    COST_MISMATCH = "cost_mismatch"
    STATE_MISMATCH = "state_mismatch"  # succeeded on one side, failed on the other


class ReconcileError(ShopError):
    """The other side's records could not be used (or the request was wrong): nothing was recorded or booked.
    `message_id` + params are for the merchant; `str()` is the detail for the log and the CLI."""

    message_id = "reconcile.error"

    def __init__(self, message_id: str, detail: str = "", **params: object) -> None:
        super().__init__(detail or message_id, **params)
        self.message_id = message_id


@dataclass
class Findings:
    """What a source read and found for one day, before anything is written."""

    checked: int = 0  # records of the other side read
    discrepancies: list[NewDiscrepancy] = field(default_factory=list)
    fees: list[FeeActual] = field(default_factory=list)  # actual fees by provider transaction (WeChat Pay)
    fee_provider: str = ""


@dataclass(frozen=True)
class Outcome:
    source: str
    day: date
    checked: int
    found: int  # discrepancies found in this run (new or known)
    new: tuple[Discrepancy, ...]
    fees_corrected: int
    fee_delta: int  # minor units: positive when the actual fees were higher than booked


#: a source: reads the day (or a supplier name and the day) and compares, raising ReconcileError on bad input
Collect = Callable[[date, tzinfo], Awaitable[Findings]]


def day_window(day: date, zone: tzinfo) -> tuple[datetime, datetime]:
    """[start, end) of a local day, in UTC."""
    start = datetime.combine(day, time(0), zone)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


def parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ReconcileError("reconcile.bad_date", f"not a date (YYYY-MM-DD): {text[:20]!r}", date=text[:20]) \
            from None


class Reconciliation:
    """Runs sources by name ("wechatpay", "telegram", "supplier:NAME"), records what they found, lists and resolves
    discrepancies. Every run and resolution is audited."""

    def __init__(self, store: Store, timezone: str = "Asia/Shanghai",
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.zone: tzinfo = ZoneInfo(timezone)
        self.clock = clock
        self.sources: dict[str, Collect] = {}
        #: source -> (zone its days are in, hour of that day after which yesterday can be read)
        self.ready: dict[str, tuple[tzinfo, int]] = {}
        #: supplier name -> collect for that supplier (sources "supplier:NAME" are made from it on demand)
        self.supplier: Callable[[str], Awaitable[Collect | None]] | None = None
        #: the shop's suppliers by name (the daily job reconciles each)
        self.supplier_names: Callable[[], Awaitable[list[str]]] | None = None
        self.holder = secrets.token_hex(8)

    def add(self, name: str, collect: Collect, zone: tzinfo | None = None, ready_hour: int = 1) -> None:
        self.sources[name] = collect
        self.ready[name] = (zone or self.zone, ready_hour)

    def yesterday(self, source: str) -> date:
        zone, _ = self.ready.get(source, (self.zone, 1))
        return self.clock().astimezone(zone).date() - timedelta(days=1)

    async def _collect(self, source: str) -> tuple[Collect, tzinfo]:
        if source.startswith("supplier:") and self.supplier is not None:
            found = await self.supplier(source.removeprefix("supplier:"))
            if found is not None:
                return found, self.zone
        if source not in self.sources:
            raise ReconcileError("reconcile.unknown_source", f"no such source here: {source[:40]!r}",
                                 source=source[:40])
        return self.sources[source], self.ready[source][0]

    async def run(self, source: str, day: date | None, channel: str, actor: str,
                  collect: Collect | None = None) -> Outcome:
        """Reconcile one day (default: yesterday) of a source, or with `collect` instead of the source's own reading
        (a supplier statement)."""
        own, zone = await self._collect(source) if collect is None else (collect, self.zone)
        collect = own
        day = day or self.yesterday(source)
        today = self.clock().astimezone(zone).date()
        if day >= today:
            raise ReconcileError("reconcile.future_date", f"{day} is not over yet", date=day.isoformat())
        findings = await collect(day, zone)
        return await self.record(source, day, findings, channel, actor)

    async def record(self, source: str, day: date, findings: Findings, channel: str, actor: str) -> Outcome:
        """Write what a source found (its input was read whole and well formed): discrepancies once, fees once."""
        now = self.clock()
        new = await self.store.record_discrepancies(findings.discrepancies, now)
        corrected, delta = (await self.store.correct_fees(findings.fee_provider, findings.fees, now)
                            if findings.fees else (0, 0))
        outcome = Outcome(source, day, findings.checked, len(findings.discrepancies), tuple(new), corrected, delta)
        await self.store.audit(channel, actor, "reconcile", f"{source} {day} checked={outcome.checked}"
                               f" found={outcome.found} new={len(new)} fees={corrected}", now)
        log.info("event=reconcile.done source=%s day=%s checked=%s found=%s new=%s fees_corrected=%s", source, day,
                 outcome.checked, outcome.found, len(new), corrected)
        return outcome

    async def discrepancies(self, include_resolved: bool = False, limit: int = MAX_LIST) -> list[Discrepancy]:
        return await self.store.discrepancies(include_resolved, limit)

    async def resolve(self, discrepancy_id: int, channel: str, actor: str, note: str) -> Discrepancy:
        note = " ".join(note.split())[:MAX_NOTE]
        if not note:
            raise ReconcileError("reconcile.note_needed", "a resolution needs a note")
        found = await self.store.discrepancy(discrepancy_id)
        if found is None:
            raise ReconcileError("reconcile.unknown_discrepancy", f"no discrepancy {discrepancy_id}",
                                 id=discrepancy_id)
        now = self.clock()
        if not await self.store.resolve_discrepancy(discrepancy_id, actor, note, now):
            raise ReconcileError("reconcile.already_resolved", f"discrepancy {discrepancy_id} is resolved",
                                 id=discrepancy_id)
        await self.store.audit(channel, actor, "discrepancy_resolve", f"{discrepancy_id} {note}", now)
        resolved = await self.store.discrepancy(discrepancy_id)
        assert resolved is not None
        return resolved

    async def to_report(self, limit: int = 50) -> list[Discrepancy]:
        """Discrepancies not told to the merchants yet, each claimed for this caller (told once)."""
        claimed = []
        for d in await self.store.unreported_discrepancies(limit):
            if await self.store.mark_discrepancy_reported(d.id, self.clock()):
                claimed.append(d)
        return claimed

    async def daily(self, sources: Sequence[str]) -> list[Outcome]:
        """Yesterday of each source once, by the one process holding the lease; a source whose other side is not
        ready or unreadable is tried again on the next tick."""
        now = self.clock()
        if not await self.store.try_lease(DAILY_LEASE, self.holder, now + timedelta(minutes=30), now):
            return []
        done: list[Outcome] = []
        try:
            for source in sources:
                zone, hour = self.ready.get(source, (self.zone, 1))
                if now.astimezone(zone).hour < hour:
                    continue
                day = self.yesterday(source)
                key = f"{DONE_KEY}{source}.{day.isoformat()}"
                if await self.store.kv_get(key, now):
                    continue
                try:
                    done.append(await self.run(source, day, "job", "daily"))
                except ReconcileError as exc:
                    log.warning("event=reconcile.failed source=%s day=%s reason=%r", source, day, str(exc)[:120])
                    continue
                await self.store.kv_put(key, "1", now + timedelta(days=7))
        finally:
            await self.store.release_lease(DAILY_LEASE, self.holder)
        return done
