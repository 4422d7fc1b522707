"""The after-sales tickets seam: customer questions for a person, and bad-code replacement."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from storage.records import (
    CodeReplaced,
    NewTicket,
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
