"""Procurement from suppliers, exactly once.

A procurement is written `planned` before anything is sent, marked `sent` just before the supplier is called
(the conditional update is the one permission to send), and settled once by whichever answer comes first: the
buy's own answer, a query (job `resolve_due`) or a supplier callback. The second is a no-op (the store settles a
procurement only from sent/unknown).

- A definitive refusal (errors.DefinitiveFailure) settles it `failed`: nothing was bought, failing over is safe.
- A lost or meaningless answer (timeout after sending, reset, 5xx, garbage) makes it `unknown`: it is queried until
  the supplier says succeeded or failed, and nobody fails over meanwhile. A supplier that cannot find orders by our
  reference (acg-faka) leaves such a procurement unknown for a merchant, unless we hold its order id.
- A `sent` procurement whose process died before the answer is treated as unknown after `sent_grace`; a `planned`
  one that was never sent is failed after `planned_grace` (mark_sent is conditional, so a late sender backs off;
  its own grace, so a resolver told to query sent rows at once does not fail a purchase about to be sent).
- The answer must match ours (product, quantity): one that does not is held for a merchant, codes untouched.
- While its buying request is out a purchase holds one of its supplier's K purchase slots (suppliers/breaker.py);
  without one it waits, and is failed as never sent (`supplier.no_slot`) if the breaker opens meanwhile.
- Codes received go through the vault: normalised, sealed, deduplicated by HMAC (a code the vault already holds is
  not sold again); the store records received, duplicates and the shortfall, and the batch carries the unit cost.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fulfillment.suppliers.breaker import GuardedSupplier
from fulfillment.suppliers.errors import (
    DefinitiveFailure,
    ForgedCallback,
    OrderNotFound,
    OutcomeUnknown,
    SupplierError,
)
from fulfillment.suppliers.protocol import Money, OrderStatus, SupplierOrder
from fulfillment.suppliers.registry import SupplierRegistry
from fulfillment.vault import Vault, normalise_code
from storage.protocol import Store
from storage.records import NewCode
from storage.records_supply import NewProcurement, Procurement, ProcurementState, Settlement

log = logging.getLogger("kamibot.procurement")
_REF_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
RESOLVE_LEASE = "procurement.resolve"


def new_procurement_ref() -> str:
    """Our reference, sent as the supplier's idempotency key (kashangwl outer_order_id, acg-faka request_no)."""
    return "P" + "".join(secrets.choice(_REF_ALPHABET) for _ in range(15))


class UnknownSupplier(LookupError):
    pass


@dataclass(frozen=True)
class ProcurementPolicy:
    sent_grace: timedelta = timedelta(seconds=60)  # a `sent` row this old has lost its caller: query it
    planned_grace: timedelta = timedelta(seconds=60)  # a `planned` row this old was never sent: fail it
    not_found_after: timedelta = timedelta(minutes=10)  # kashangwl: "no such order" this long after sending
    resolve_batch: int = 50
    lease: timedelta = timedelta(seconds=30)
    alert_after: timedelta = timedelta(minutes=30)  # an outcome still unknown this long: merchants are told


class ProcurementService:
    def __init__(self, store: Store, vault: Vault, registry: SupplierRegistry, holder: str,
                 policy: ProcurementPolicy = ProcurementPolicy(),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.vault = vault
        self.registry = registry
        self.holder = holder
        self.policy = policy
        self.clock = clock
        #: tells the merchants (message id, params) about held and long-unknown procurements; set by bot/supply.py
        self.alert: Callable[[str, dict[str, object]], Awaitable[None]] | None = None

    async def _alert_once(self, msgid: str, p: Procurement, detail: str) -> None:
        now = self.clock()
        if await self.store.claim_once(msgid, p.our_ref, now + timedelta(days=3650), now) and self.alert is not None:
            await self.alert(msgid, {"ref": p.our_ref, "supplier": p.supplier, "product": p.product_id,
                                     "quantity": p.quantity, "supplier_order": p.supplier_order_id or "-",
                                     "detail": detail[:120]})

    # -- buying ----------------------------------------------------------------------------------------------
    async def buy(self, supplier: str, product_id: str, quantity: int, max_unit_cost: int, currency: str,
                  pool_id: int, order_id: int | None = None) -> Procurement | None:
        """Plan and send one purchase of codes into `pool_id`. None when a live procurement of the same order
        (or an open restock of the pool) blocks it: nothing is sent."""
        if quantity < 1 or max_unit_cost < 0:
            raise ValueError("quantity >= 1 and max_unit_cost >= 0")
        planned = await self.store.plan_procurement(NewProcurement(
            new_procurement_ref(), supplier, product_id, quantity, max_unit_cost, currency, pool_id, order_id),
            self.clock())
        if planned is None:
            return None
        log.info("event=procurement.planned ref=%s supplier=%s product=%s quantity=%d pool=%d order=%s",
                 planned.our_ref, supplier, product_id, quantity, pool_id, order_id or "-")
        return await self.send(planned)

    async def send(self, p: Procurement) -> Procurement | None:
        """Send a planned purchase: codes, or for an order with a recharge target, `recharge` of that target."""
        supplier = await self.registry.get(p.supplier)
        if supplier is None:
            return await self._settle(p.our_ref, Settlement(ProcurementState.FAILED, detail="supplier.not_configured"))
        # a direct recharge order names its target: the supplier credits it (no codes come back)
        target = await self._target(p)
        try:
            order = await self._exchange(supplier, p, target)
        except DefinitiveFailure as exc:
            log.info("event=procurement.refused ref=%s supplier=%s reason=%s", p.our_ref, p.supplier, exc.kind)
            return await self._settle(p.our_ref, Settlement(ProcurementState.FAILED, detail=exc.kind))
        except SupplierError as exc:  # OutcomeUnknown and anything else after sending: it may have happened
            log.warning("event=procurement.unknown ref=%s supplier=%s reason=%s", p.our_ref, p.supplier, exc.kind)
            await self.store.mark_procurement_unknown(p.our_ref, exc.kind, self.clock())
            return await self.store.procurement_by_ref(p.our_ref)
        if order is None:
            return await self.store.procurement_by_ref(p.our_ref)  # not ours to send (failed or sent already)
        return await self.apply(p, order)

    async def _exchange(self, supplier: GuardedSupplier, p: Procurement, target: str | None) -> SupplierOrder | None:
        """Mark `p` sent and call the supplier (its buying request holds a purchase slot, breaker.py: NoPurchaseSlot
        when the breaker opens, or none frees, while it waits; nothing sent). None: `p` is not ours to send."""
        if not await self.store.mark_procurement_sent(p.our_ref, self.clock()):
            return None
        if target:
            return await supplier.recharge(p.our_ref, p.product_id, target, p.quantity,
                                           Money(p.max_unit_cost, p.currency))
        return await supplier.buy_codes(p.our_ref, p.product_id, p.quantity, Money(p.max_unit_cost, p.currency))

    async def _target(self, p: Procurement) -> str | None:
        order = await self.store.order_by_id(p.order_id) if p.order_id is not None else None
        return order.target if order is not None else None

    # -- answers ---------------------------------------------------------------------------------------------
    async def apply(self, p: Procurement, order: SupplierOrder) -> Procurement | None:
        """Settle `p` by what the supplier says of it (buy answer, query or callback); the procurement as it
        stands after (an answer arriving after another settled it changes nothing)."""
        mismatch = _mismatch(p, order)
        if mismatch:
            log.warning("event=procurement.held ref=%s supplier=%s reason=%s", p.our_ref, p.supplier, mismatch)
            await self.store.hold_procurement(p.our_ref, mismatch, self.clock())
            await self._alert_once("supply.held", p, mismatch)
            return await self.store.procurement_by_ref(p.our_ref)
        cost = order.cost.amount if order.cost is not None and order.cost.currency == p.currency else None
        if order.status is OrderStatus.SUCCEEDED:
            sealed = self._seal(order.codes, p.our_ref)
            return await self._settle(p.our_ref, Settlement(ProcurementState.SUCCEEDED, order.supplier_order_id, cost,
                                                            order.detail), sealed)
        if order.status is OrderStatus.FAILED:
            return await self._settle(p.our_ref, Settlement(ProcurementState.FAILED, order.supplier_order_id,
                                                            detail=order.detail or "supplier.failed"))
        # pending, processing or unknown at the supplier: remember its order id, query later
        if p.state is ProcurementState.SENT or order.supplier_order_id != p.supplier_order_id:
            return await self._settle(p.our_ref, Settlement(ProcurementState.UNKNOWN, order.supplier_order_id,
                                                            detail=order.status.value))
        return p

    def _seal(self, codes: tuple[str, ...], our_ref: str) -> list[NewCode]:
        sealed = []
        for raw in codes:
            try:
                sealed.append(self.vault.seal(normalise_code(raw)))
            except ValueError as exc:
                log.warning("event=procurement.code_refused ref=%s reason=%s", our_ref, exc)  # the reason, no code
        return sealed

    async def _settle(self, our_ref: str, outcome: Settlement, codes: list[NewCode] | None = None
                      ) -> Procurement | None:
        settled = await self.store.settle_procurement(our_ref, outcome, codes or [], self.clock())
        if settled is None:  # settled already (the callback or a query was first): this answer changes nothing
            return await self.store.procurement_by_ref(our_ref)
        if settled.state is not ProcurementState.UNKNOWN:
            log.info("event=procurement.settled ref=%s supplier=%s state=%s received=%d duplicates=%d shortfall=%d",
                     our_ref, settled.supplier, settled.state.value, settled.received, settled.duplicates,
                     settled.shortfall)
        return settled

    # -- resolving ---------------------------------------------------------------------------------------------
    async def resolve(self, p: Procurement) -> Procurement | None:
        """Query one open procurement; None when it stays as it is (supplier unreachable, not findable)."""
        now = self.clock()
        if p.state is ProcurementState.PLANNED:  # never sent: fail it (a late sender's mark_sent then fails)
            return await self._settle(p.our_ref, Settlement(ProcurementState.FAILED, detail="never sent"))
        supplier = await self.registry.get(p.supplier)
        if supplier is None or (not supplier.queries_by_reference and not p.supplier_order_id):
            return None  # a merchant settles it (acg-faka cannot find an order by our reference)
        try:
            order = await supplier.query(p.our_ref, p.supplier_order_id)
        except OrderNotFound:
            if now - p.created_at >= self.policy.not_found_after:
                return await self._settle(p.our_ref, Settlement(ProcurementState.FAILED,
                                                                detail="supplier has no such order"))
            return None
        except SupplierError as exc:
            log.info("event=procurement.query_failed ref=%s supplier=%s reason=%s", p.our_ref, p.supplier, exc.kind)
            return None
        return await self.apply(p, order)

    async def settle_by_merchant(self, our_ref: str, outcome: ProcurementState, actor: str
                                 ) -> Procurement | None:
        """A merchant checked the supplier's own records: FAILED (nothing was bought: the pool or order may buy
        again) or SUCCEEDED without codes (bought, codes imported by hand). Audited; None for an unknown or
        already settled reference."""
        if outcome not in (ProcurementState.FAILED, ProcurementState.SUCCEEDED):
            raise ValueError("a merchant settles a procurement as failed or succeeded")
        settled = await self.store.settle_procurement(our_ref, Settlement(outcome, detail=f"settled by {actor}"),
                                                      [], self.clock())
        if settled is not None:
            await self.store.audit("supply", actor, "procurement.settle", f"{our_ref} {outcome.value}", self.clock())
        return settled

    async def resolve_due(self) -> int:
        """Job tick: one process at a time (a lease) queries unknown procurements and stale sent/planned ones."""
        now = self.clock()
        if not await self.store.try_lease(RESOLVE_LEASE, self.holder, now + self.policy.lease, now):
            return 0
        try:
            due = await self.store.procurements([ProcurementState.UNKNOWN], self.policy.resolve_batch)
            due += await self.store.procurements([ProcurementState.SENT], self.policy.resolve_batch,
                                                 now - self.policy.sent_grace)
            due += await self.store.procurements([ProcurementState.PLANNED], self.policy.resolve_batch,
                                                 now - self.policy.planned_grace)
            settled = 0
            for p in due:
                if p.held:
                    continue
                if p.state is ProcurementState.UNKNOWN and now - p.created_at >= self.policy.alert_after:
                    await self._alert_once("supply.unknown_long", p, p.detail)
                done = await self.resolve(p)
                settled += done is not None and done.state is not p.state and done.state is not ProcurementState.UNKNOWN
            return settled
        finally:
            await self.store.release_lease(RESOLVE_LEASE, self.holder)

    async def on_callback(self, supplier_name: str, headers: Mapping[str, str], body: bytes) -> bytes:
        """A supplier's notification: verified (ForgedCallback: answer 403, nothing changes), matched to our
        procurement and settled like a query's answer. Returns the body to answer with. Raises UnknownSupplier."""
        supplier = await self.registry.get(supplier_name)
        if supplier is None or supplier.callback_answer is None:
            raise UnknownSupplier(supplier_name)
        order = supplier.parse_callback(headers, body)
        p = await self.store.procurement_by_ref(order.our_ref)
        if p is None or p.supplier != supplier_name:
            log.warning("event=procurement.callback_unknown supplier=%s ref=%s", supplier_name, order.our_ref[:64])
            return supplier.callback_answer  # verified, nothing of ours: stop the retries, change nothing
        if order.status is OrderStatus.SUCCEEDED and not order.codes:
            # callbacks do not sign codes (kashangwl): read them with our own query
            if _mismatch(p, order):
                await self.apply(p, order)
            elif p.state in (ProcurementState.SENT, ProcurementState.UNKNOWN):
                try:
                    await self.apply(p, await supplier.query(p.our_ref, order.supplier_order_id))
                except (OutcomeUnknown, SupplierError) as exc:
                    log.info("event=procurement.query_failed ref=%s reason=%s", p.our_ref, exc.kind)
                    await self._settle(p.our_ref, Settlement(ProcurementState.UNKNOWN, order.supplier_order_id,
                                                             detail="callback: succeeded"))
        else:
            await self.apply(p, order)
        return supplier.callback_answer


def _mismatch(p: Procurement, order: SupplierOrder) -> str:
    if order.our_ref and order.our_ref != p.our_ref:
        return "answer for another reference"
    if order.product_id and order.product_id != p.product_id:
        return f"supplier says product {order.product_id[:32]}, we ordered {p.product_id}"
    if order.quantity is not None and order.quantity != p.quantity:
        return f"supplier says quantity {order.quantity}, we ordered {p.quantity}"
    return ""


__all__ = ["ForgedCallback", "ProcurementPolicy", "ProcurementService", "UnknownSupplier", "new_procurement_ref"]
