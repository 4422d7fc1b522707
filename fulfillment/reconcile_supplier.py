"""Supplier reconciliation: a supplier's own records of one day against the shop's procurements from it.

Two ways to read the supplier's side:
- its order query (fulfillment/suppliers/, `query(our_ref, supplier_order_id)`), asked for every procurement of the
  day that was sent: not found there (missing at the supplier), another cost, or another final state;
- a statement the merchant imports (CSV, UTF-8, header row): `our_ref,supplier_order_id,cost,currency,state` with
  optional further columns ignored by name; `cost` in the currency's main unit with up to two decimals ("12.50"),
  `state` succeeded|failed|pending. A statement also shows orders the shop never made (extra at the supplier).

A read that fails (the supplier unreachable, an unknown outcome) or a malformed statement refuses the whole run.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, tzinfo
from decimal import Decimal, InvalidOperation

from fulfillment.reconcile import Collect, Findings, Kind, ReconcileError, day_window
from fulfillment.suppliers.errors import OrderNotFound, SupplierError
from fulfillment.suppliers.protocol import OrderStatus, Supplier
from storage.protocol import Store
from storage.protocols.reconcile import NewDiscrepancy
from storage.records_supply import Procurement, ProcurementState

STATEMENT_COLUMNS = ("our_ref", "supplier_order_id", "cost", "currency", "state")
STATEMENT_STATES = {"succeeded": ProcurementState.SUCCEEDED, "failed": ProcurementState.FAILED,
                    "pending": ProcurementState.UNKNOWN}
MAX_STATEMENT_ROWS = 200_000
SENT_STATES = (ProcurementState.SENT, ProcurementState.SUCCEEDED, ProcurementState.FAILED, ProcurementState.UNKNOWN)


@dataclass(frozen=True)
class SupplierLine:
    """One order as the supplier records it."""

    our_ref: str
    supplier_order_id: str
    cost: int | None  # minor units, the whole order
    currency: str
    state: ProcurementState  # SUCCEEDED, FAILED or UNKNOWN (still open at the supplier)


def _bad(detail: str) -> ReconcileError:
    return ReconcileError("reconcile.bad_statement", detail, reason=detail[:120])


def _minor(text: str, line: int) -> int:
    try:
        value = Decimal(text.strip()) * 100
    except InvalidOperation:
        raise _bad(f"line {line}: cost {text[:20]!r} is not an amount") from None
    if not value.is_finite() or value != value.to_integral_value() or value < 0:
        raise _bad(f"line {line}: cost {text[:20]!r} is not a whole number of cents")
    return int(value)


def parse_statement(text: str, currency: str) -> list[SupplierLine]:
    """A statement CSV; raises ReconcileError (reconcile.bad_statement) naming the first bad line."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip().lower() for h in next(reader, [])]
    missing = [c for c in STATEMENT_COLUMNS if c not in header]
    if missing:
        raise _bad(f"the header lacks {missing[0]!r} (needs {', '.join(STATEMENT_COLUMNS)})")
    at = {c: header.index(c) for c in STATEMENT_COLUMNS}
    lines: list[SupplierLine] = []
    for n, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header) or len(lines) >= MAX_STATEMENT_ROWS:
            raise _bad(f"line {n}: {len(row)} fields, the header has {len(header)}")
        ref, state = row[at["our_ref"]].strip(), row[at["state"]].strip().lower()
        if not ref or state not in STATEMENT_STATES:
            raise _bad(f"line {n}: needs our_ref and a state of {'|'.join(STATEMENT_STATES)}")
        if row[at["currency"]].strip().upper() != currency:
            raise _bad(f"line {n}: currency {row[at['currency']][:8]!r}, the supplier is kept in {currency}")
        lines.append(SupplierLine(ref, row[at["supplier_order_id"]].strip(), _minor(row[at["cost"]], n), currency,
                                  STATEMENT_STATES[state]))
    return lines


def compare(name: str, day: date, ours: list[Procurement], theirs: dict[str, SupplierLine] | None,
            statement: bool) -> list[NewDiscrepancy]:
    """Procurements against the supplier's lines by our reference; `statement`: lines not ours are extra."""
    source, period = f"supplier:{name}", day.isoformat()
    found: list[NewDiscrepancy] = []
    lines = dict(theirs or {})
    for p in ours:
        line = lines.pop(p.our_ref, None)
        if p.state not in SENT_STATES:
            continue
        if line is None:
            if p.state != ProcurementState.FAILED:  # a failed order the supplier never kept is consistent
                found.append(NewDiscrepancy(source, Kind.MISSING_AT_SUPPLIER.value, p.our_ref, "", p.currency, p.cost,
                                            None, f"product {p.product_id}", period))
            continue
        final = (ProcurementState.SUCCEEDED, ProcurementState.FAILED)
        if p.state in final and line.state in final and p.state != line.state:
            found.append(NewDiscrepancy(source, Kind.STATE_MISMATCH.value, p.our_ref, "", p.currency, None, None,
                                        f"shop {p.state.value}, supplier {line.state.value}", period))
        elif p.state == ProcurementState.SUCCEEDED and line.cost is not None and line.cost != p.cost:
            found.append(NewDiscrepancy(source, Kind.COST_MISMATCH.value, p.our_ref, "", p.currency, p.cost,
                                        line.cost, f"supplier order {line.supplier_order_id[:40]}", period))
    if statement:
        for line in lines.values():
            if line.state != ProcurementState.FAILED:
                found.append(NewDiscrepancy(source, Kind.EXTRA_AT_SUPPLIER.value, line.our_ref, "", line.currency,
                                            None, line.cost, f"supplier order {line.supplier_order_id[:40]}", period))
    return found


_STATUS = {OrderStatus.SUCCEEDED: ProcurementState.SUCCEEDED, OrderStatus.FAILED: ProcurementState.FAILED}


class SupplierRecords:
    """`supplier:NAME` reconciliation sources: by the supplier's query API, or from an imported statement."""

    def __init__(self, store: Store, supplier: Callable[[str], Awaitable[Supplier | None]]) -> None:
        self.store = store
        self.supplier = supplier

    async def source(self, name: str) -> Collect | None:
        """The query-API source of a configured, active supplier (None: no such supplier)."""
        if await self.supplier(name) is None:
            return None

        async def collect(day: date, zone: tzinfo) -> Findings:
            return await self.by_query(name, day, zone)

        return collect

    async def by_query(self, name: str, day: date, zone: tzinfo) -> Findings:
        supplier = await self.supplier(name)
        if supplier is None:
            raise ReconcileError("reconcile.unknown_source", f"no active supplier {name[:40]!r}",
                                 source=f"supplier:{name[:40]}")
        ours = await self.store.supplier_procurements(name, *day_window(day, zone))
        theirs: dict[str, SupplierLine] = {}
        for p in ours:
            if p.state not in SENT_STATES or not (supplier.queries_by_reference or p.supplier_order_id):
                continue
            try:
                order = await supplier.query(p.our_ref, p.supplier_order_id)
            except OrderNotFound:
                continue  # missing at the supplier
            except SupplierError as exc:
                raise ReconcileError("reconcile.provider_failed", f"{name}: {exc.kind}", error=exc.kind) from None
            theirs[p.our_ref] = SupplierLine(p.our_ref, order.supplier_order_id or "",
                                             order.cost.amount if order.cost is not None else None, p.currency,
                                             _STATUS.get(order.status, ProcurementState.UNKNOWN))
        return Findings(len(theirs), compare(name, day, ours, theirs, statement=False))

    async def by_statement(self, name: str, day: date, zone: tzinfo, text: str) -> Findings:
        record = await self.store.supplier_by_name(name)
        if record is None:
            raise ReconcileError("reconcile.unknown_source", f"no supplier {name[:40]!r}",
                                 source=f"supplier:{name[:40]}")
        lines = parse_statement(text, record.currency)
        ours = await self.store.supplier_procurements(name, *day_window(day, zone))
        mine = {p.our_ref for p in ours}
        for line in list(lines):  # a line of a procurement made on another day is not an extra order
            if line.our_ref not in mine and await self.store.procurement_by_ref(line.our_ref) is not None:
                lines.remove(line)
        return Findings(len(lines), compare(name, day, ours, {line.our_ref: line for line in lines}, statement=True))
