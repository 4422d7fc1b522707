"""The after-sales tickets seam: customer questions for a person, and bad-code replacement."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from storage.records import (
    AutoReplaceRequest,
    BadCodeReported,
    CodeReplaced,
    NewTicket,
    OnceKey,
    ReportReplaced,
    Ticket,
)


class TicketStore(Protocol):
    """Tickets and the one-transaction code replacement."""

    async def open_ticket(self, ticket: NewTicket, now: datetime) -> Ticket:
        """Open a ticket, or update (and reopen) the live one of the same customer, kind, order and code."""
        ...

    async def ticket_by_id(self, ticket_id: int) -> Ticket | None: ...
    async def live_tickets(self, limit: int, order_id: int | None = None) -> list[Ticket]:
        """Tickets not closed (open or answered), oldest first; only those about `order_id` if given."""
        ...

    async def live_ticket(self, channel: str, user_id: str, kind: str) -> Ticket | None:
        """The customer's newest ticket of this kind that is not closed."""
        ...

    async def answer_ticket(self, ticket_id: int, text: str, now: datetime) -> Ticket | None:
        """A merchant answered: state answered, text kept; None for an unknown or closed ticket."""
        ...

    async def close_ticket(self, ticket_id: int, now: datetime) -> bool:
        """True when this call closed it (False: unknown or already closed)."""
        ...

    async def replace_code(self, order_id: int, code_id: int, now: datetime) -> CodeReplaced | None:
        """Replace a delivered code reported bad, in one transaction: the code quarantined (its unsold uses leave
        the stock), its order item released without returning the use, a new use from the same pool as a new
        item, its cost in the ledger and a resend outbox row. None when the order (delivering/delivered) has no
        live item with that code, e.g. a second call. Raises InsufficientStock (nothing changes)."""
        ...

    async def report_bad_code(self, ticket: NewTicket, auto: AutoReplaceRequest | None,
                              now: datetime) -> BadCodeReported:
        """A customer's bad-code report (`ticket`: kind bad_code, with order and code), one transaction. With
        `auto` and its claim still free, the code is replaced (as replace_code), the claim spent and the ticket
        answered with the note and closed; otherwise, or when the replacement fails (no stock, already
        replaced), nothing but the open ticket is written and the claim stays free."""
        ...

    async def replace_reported_code(self, order_id: int, item_no: int | None, scan: int,
                                    now: datetime) -> ReportReplaced:
        """A merchant's replacement, one transaction: the code of live item `item_no`, else of the oldest live
        bad-code report among the order's first `scan` live tickets, else of the only live item; replaced as
        replace_code and the live reports about that code closed. Raises InsufficientStock (nothing changes)."""
        ...

    async def resend_once(self, order_id: int, claim: OnceKey, now: datetime) -> int | None:
        """Claim `claim` and queue a resend of the order's codes, one transaction; None when already claimed."""
        ...

    async def claim_reminders(self, claims: Sequence[OnceKey], now: datetime) -> list[OnceKey]:
        """claim_once of each key in one transaction; the ones this call claimed."""
        ...

    async def save_policy(self, key: str, value: str, audit: tuple[str, str, str, str], now: datetime) -> None:
        """Store a shared policy value (kv, no expiry) and its audit entry (channel, actor, action, detail) in
        one transaction."""
        ...
