"""Supplier errors, split by what the caller may do next.

- `DefinitiveFailure`: refused before anything happened (nothing bought, nothing charged). Safe to fail over.
- `OutcomeUnknown`: the request went out and the answer was lost or meaningless (timeout after sending, connection
  reset, 5xx, HTML, truncated JSON, kashangwl `server_error`). The order may exist: query, never fail over.
- `SupplierUnavailable`: a read (query, catalogue, balance) got no usable answer; nothing changed at the supplier.
- `OrderNotFound`: the supplier says it has no order under that reference (what that proves depends on its
  documented query window; the procurement side decides).
- `ForgedCallback`: a callback whose signature does not verify. Answer 403 and change nothing.

Texts never carry keys, signatures, codes or request bodies: only the supplier's name, our reference, HTTP status
and the supplier's short message (with our key scrubbed out should it echo it).
"""

from __future__ import annotations


class SupplierError(Exception):
    """Base of every supplier error; `kind` is a stable machine id for logs and merchant messages."""

    kind = "supplier.error"

    def __init__(self, detail: str, *, supplier: str = "", our_ref: str = "") -> None:
        self.detail = detail
        self.supplier = supplier
        self.our_ref = our_ref
        where = " ".join(part for part in (f"supplier={supplier}" if supplier else "",
                                           f"ref={our_ref}" if our_ref else "") if part)
        super().__init__(f"{self.kind}: {detail}" + (f" ({where})" if where else ""))


class DefinitiveFailure(SupplierError):
    """Nothing happened at the supplier; the caller may fail over."""

    kind = "supplier.refused"


class NotSent(DefinitiveFailure):
    """The connection could not be made: the request never left."""

    kind = "supplier.not_sent"


class AuthenticationFailed(DefinitiveFailure):
    """The supplier refused our credentials or signature."""

    kind = "supplier.auth_failed"


class InsufficientBalance(DefinitiveFailure):
    kind = "supplier.insufficient_balance"


class ProductUnavailable(DefinitiveFailure):
    """Unknown product, off sale, in maintenance or out of stock."""

    kind = "supplier.product_unavailable"


class PriceAboveLimit(DefinitiveFailure):
    """The supplier's price is above the most we agreed to pay (kashangwl safe_cost, or our own check)."""

    kind = "supplier.price_above_limit"


class InvalidTarget(DefinitiveFailure):
    """The recharge account or parameters were refused."""

    kind = "supplier.invalid_target"


class Rejected(DefinitiveFailure):
    """Any other refusal the supplier's documentation treats as final."""

    kind = "supplier.rejected"


class OutcomeUnknown(SupplierError):
    """The request may have been acted on; only a query (or callback) can tell."""

    kind = "supplier.outcome_unknown"


class SupplierUnavailable(SupplierError):
    """A read got no usable answer (timeouts, 5xx, garbage) after its retries."""

    kind = "supplier.unavailable"


class OrderNotFound(SupplierError):
    kind = "supplier.order_not_found"


class ForgedCallback(SupplierError):
    kind = "supplier.forged_callback"


class BadAnswer(SupplierError):
    """The supplier answered with well-formed JSON that breaks its own schema (missing fields, absurd prices).
    Raised only where nothing was bought; on a buy the adapter turns it into OutcomeUnknown."""

    kind = "supplier.bad_answer"


def scrub(text: str, *secrets: str, limit: int = 200) -> str:
    """A supplier's message made safe for an exception or a log line: secrets removed, one line, bounded."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return " ".join(text.split())[:limit]
