"""Plain records that cross the storage seam: what the stores take and give back."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple


class OrderState(enum.StrEnum):
    """Order states of DESIGN.md; the allowed transitions live in fulfillment/orders.py."""

    CREATED = "created"
    RESERVED = "reserved"
    AWAITING_PAYMENT = "awaiting_payment"
    PAID = "paid"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    EXPIRED = "expired"
    REJECTED = "rejected"
    REVIEW = "review"
    REFUNDED = "refunded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class StateGroups:
    """Which order states each storage verb works on. The values are named once, next to the lifecycle table in
    fulfillment/orders.py (`STATE_GROUPS`), and handed to a store when it is built: storage decides no business
    rule itself."""

    #: orders that hold reserved stock (counted out of the pool's available uses)
    holding: frozenset[OrderState]
    #: a payment is accepted and applied; a merchant-approved review goes back to one of these
    payable: frozenset[OrderState]
    #: `refund` accepts these
    refundable: frozenset[OrderState]
    #: the order has codes (a bad one can be replaced)
    with_codes: frozenset[OrderState]
    #: finished without a sale: not counted against per-user purchase limits
    closed: frozenset[OrderState]
    #: counted as paid orders in a customer's risk statistics
    sold: frozenset[OrderState]

    def values(self, group: frozenset[OrderState]) -> list[str]:
        """A group as sorted state names (SQL parameters, PL/pgSQL arrays)."""
        return sorted(s.value for s in group)


#: ledger kinds of a second payment of an already paid order and of its refund (net zero; left out of revenue)
DUPLICATE_PAYMENT = "duplicate_payment"
DUPLICATE_REFUND = "duplicate_refund"


class PaymentOutcome(enum.StrEnum):
    """What applying a payment event did to its order."""

    ALLOCATED = "allocated"  # paid, codes allocated, outbox row written
    REVIEW = "review"  # amount/currency mismatch or a second payment: held, nothing delivered
    FAILED = "failed"  # paid but no stock: failed, refund queued
    UNKNOWN_ORDER = "unknown_order"
    ALREADY_APPLIED = "already_applied"
    DUPLICATE = "duplicate"  # a second payment of an already-paid order: its provider refunds it at once


@dataclass(frozen=True, slots=True)
class Category:
    id: int
    slug: str
    name_en: str
    name_zh: str
    sort: int = 0


@dataclass(frozen=True, slots=True)
class Product:
    id: int
    category_id: int
    slug: str
    name_en: str
    name_zh: str
    description_en: str = ""
    description_zh: str = ""
    instructions_en: str = ""
    instructions_zh: str = ""
    active: bool = True


@dataclass(frozen=True, slots=True)
class Pool:
    id: int
    slug: str
    name: str
    low_stock: int = 10


@dataclass(frozen=True, slots=True)
class Sku:
    id: int
    product_id: int
    pool_id: int
    slug: str
    name_en: str
    name_zh: str
    units: int = 1  # code uses drawn from the pool per item bought
    min_qty: int = 1
    max_qty: int = 10
    per_user_limit: int = 0  # items per user over all live and sold orders; 0 = unlimited
    active: bool = True
    #: None: a code SKU; "mobile": a direct recharge to a mainland mobile number; "re:PATTERN": a direct
    #: recharge to an account id that must match PATTERN (fulfillment/recharge_target.py checks it)
    target_rule: str | None = None


@dataclass(frozen=True, slots=True)
class Price:
    sku_id: int
    channel: str
    currency: str
    amount: int  # integer minor units: fen, cents, Stars


@dataclass(frozen=True, slots=True)
class StockLevel:
    pool_id: int
    pool_slug: str
    available: int  # uses neither reserved nor sold
    reserved: int  # uses held by live reservations
    low_stock: int


class NewCode(NamedTuple):
    """An encrypted code ready for insertion; `digest` is the keyed HMAC of the normalised code.

    A NamedTuple, not a dataclass: imports create millions of these.
    """

    digest: bytes
    key_id: str
    nonce: bytes
    ciphertext: bytes
    uses: int = 1
    expires_at: datetime | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class InsertResult:
    inserted: int
    duplicate_in_vault: int
    duplicate_in_batch: int


@dataclass(frozen=True, slots=True)
class EncryptedCode:
    id: int
    digest: bytes
    key_id: str
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class OrderItem:
    item_no: int
    code: EncryptedCode
    use_no: int


@dataclass(frozen=True, slots=True)
class NewOrder:
    channel: str
    user_id: str
    chat_id: str
    sku_id: int
    quantity: int
    amount: int
    currency: str
    expires_at: datetime
    language: str = "en"
    target: str | None = None  # a recharge SKU's checked target (mobile number, account id)


@dataclass(frozen=True, slots=True)
class Order:
    id: int
    ref: str
    channel: str
    user_id: str
    chat_id: str
    sku_id: int
    pool_id: int
    quantity: int
    units: int
    amount: int
    currency: str
    state: OrderState
    created_at: datetime
    expires_at: datetime
    language: str = "en"
    target: str | None = None  # a recharge order's target (mobile number, account id)


@dataclass(frozen=True, slots=True)
class PaymentEventIn:
    provider: str
    provider_txn_id: str
    order_ref: str
    amount: int
    currency: str
    fee: int = 0
    payer: str = ""  # a keyed fingerprint, never a clear payer id
    received_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PaymentApplied:
    event_id: int
    outcome: PaymentOutcome
    order_id: int | None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    order_id: int
    kind: str  # "deliver" | "refund" | "notify"
    channel: str
    chat_id: str
    attempts: int
    payload: str = ""
    #: claimed again after the previous claim lapsed (its claimer died or overran the lease): possibly sent already
    interrupted: bool = False


@dataclass(frozen=True, slots=True)
class LedgerLine:
    sku_id: int
    channel: str
    kind: str  # sale | cost | fee | refund | cost_reversal
    currency: str
    amount: int
    orders: int = 0


@dataclass(slots=True)
class BatchStats:
    imported: int = 0
    duplicate_in_vault: int = 0
    duplicate_in_batch: int = 0
    invalid: list[tuple[int, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RiskDecisionRecord:
    """One risk decision as logged (the fingerprint is already a keyed hash, never the payer's identity)."""

    at: datetime
    stage: str
    channel: str
    user_id: str
    decision: str
    score: int
    reasons: str = ""
    ip: str = ""
    fingerprint: str = ""
    order_id: int | None = None
    sku_id: int | None = None


@dataclass(frozen=True, slots=True)
class UserStats:
    """What the risk rules know of a customer from the database."""

    first_seen: datetime | None
    paid_orders: int
    refunded_orders: int
    #: orders of this customer with a recorded dispute (chargeback)
    disputes: int = 0


TICKET_KINDS = ("human", "refund", "bad_code")
TICKET_STATES = ("open", "answered", "closed")
TICKET_TEXT_MAX = 500


@dataclass(frozen=True, slots=True)
class NewTicket:
    """A customer's after-sales question for a person: the code by its id only, never in clear."""

    channel: str
    user_id: str
    chat_id: str
    kind: str  # human | refund | bad_code
    text: str = ""  # the latest message, cut to TICKET_TEXT_MAX characters by the store
    order_id: int | None = None
    code_id: int | None = None
    language: str = ""


@dataclass(frozen=True, slots=True)
class Ticket:
    id: int
    channel: str
    user_id: str
    chat_id: str
    kind: str
    order_id: int | None
    code_id: int | None
    state: str  # open | answered | closed
    language: str
    last_message: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class CodeReplaced:
    """A code reported bad was quarantined and its order item given a new use from the same pool."""

    order_id: int
    old_item_no: int
    new_item_no: int
    old_code_id: int
    new_code_id: int
    outbox_id: int  # the resend row that shows the customer the new code


@dataclass(frozen=True, slots=True)
class OnceKey:
    """A claim-once key: the first claim of (scope, key) holds until `expires_at`."""

    scope: str
    key: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class AutoReplaceRequest:
    """Replace the reported code at once if `claim` (once per order) is still free."""

    claim: OnceKey
    note: str  # the ticket's answer; `{old}` and `{new}` are filled with the code ids

    def answer(self, done: CodeReplaced) -> str:
        """The note with the code ids filled in (never the codes)."""
        return self.note.replace("{old}", str(done.old_code_id)).replace("{new}", str(done.new_code_id))


@dataclass(frozen=True, slots=True)
class BadCodeReported:
    """A customer's bad-code report: its ticket, and the replacement when the auto-replace policy made one.

    `outcome` says why: replaced | not_asked | already_used | no_stock | nothing (already replaced)."""

    ticket: Ticket
    replaced: CodeReplaced | None
    outcome: str


@dataclass(frozen=True, slots=True)
class ReportReplaced:
    """A merchant's replacement of an order's code: `replaced` is None when no code was chosen (then
    `item_nos` are the order's live item numbers to choose from) or the chosen one was already replaced."""

    replaced: CodeReplaced | None
    code_chosen: bool
    item_nos: tuple[int, ...]
    closed_tickets: tuple[int, ...] = ()
