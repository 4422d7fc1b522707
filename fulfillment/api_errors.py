"""The order API's machine-readable refusals: a stable `code`, an HTTP status and a fixed English message.

API clients are programs: they branch on `code`; the message is for the developer reading a log and never carries
internal detail (no stack trace, no secret, no SQL), so it is one fixed sentence per code.
"""

from __future__ import annotations

import enum


class ApiCode(enum.StrEnum):
    MALFORMED = "MALFORMED"
    BODY_TOO_LARGE = "BODY_TOO_LARGE"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    STALE_TIMESTAMP = "STALE_TIMESTAMP"
    NONCE_REUSED = "NONCE_REUSED"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    MISSING_SCOPE = "MISSING_SCOPE"
    RATE_LIMITED = "RATE_LIMITED"
    NOT_FOUND = "NOT_FOUND"
    UNKNOWN_SKU = "UNKNOWN_SKU"
    UNKNOWN_ORDER = "UNKNOWN_ORDER"
    BAD_QUANTITY = "BAD_QUANTITY"
    NO_PRICE = "NO_PRICE"
    LIMIT_REACHED = "LIMIT_REACHED"
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    OUT_OF_STOCK = "OUT_OF_STOCK"
    DUPLICATE_ORDER_NO = "DUPLICATE_ORDER_NO"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    IDEMPOTENCY_IN_PROGRESS = "IDEMPOTENCY_IN_PROGRESS"
    BAD_CALLBACK_URL = "BAD_CALLBACK_URL"
    NOT_REFUNDABLE = "NOT_REFUNDABLE"
    BAD_TARGET = "BAD_TARGET"
    INTERNAL = "INTERNAL"


#: code -> (HTTP status, message)
ERRORS: dict[ApiCode, tuple[int, str]] = {
    ApiCode.MALFORMED: (400, "The request is malformed: check the JSON body, its fields and the headers."),
    ApiCode.BODY_TOO_LARGE: (413, "The request body is larger than 64 KiB."),
    ApiCode.BAD_SIGNATURE: (401, "The signature does not match the request."),
    ApiCode.STALE_TIMESTAMP: (401, "The timestamp is more than 300 seconds away from the server's clock."),
    ApiCode.NONCE_REUSED: (401, "This nonce was used already; sign every request with a new nonce."),
    ApiCode.UNKNOWN_KEY: (401, "The key id is unknown or revoked."),
    ApiCode.MISSING_SCOPE: (403, "The key lacks the scope this endpoint needs."),
    ApiCode.RATE_LIMITED: (429, "Too many requests for this key; slow down."),
    ApiCode.NOT_FOUND: (404, "No such endpoint."),
    ApiCode.UNKNOWN_SKU: (404, "No such SKU is for sale."),
    ApiCode.UNKNOWN_ORDER: (404, "No order of this client has that number."),
    ApiCode.BAD_QUANTITY: (422, "The quantity is not a whole number within the SKU's range."),
    ApiCode.NO_PRICE: (409, "The SKU has no price for API clients."),
    ApiCode.LIMIT_REACHED: (409, "The SKU's purchase limit is reached."),
    ApiCode.INSUFFICIENT_BALANCE: (402, "The wallet balance does not cover the order."),
    ApiCode.OUT_OF_STOCK: (409, "Not enough stock for this order."),
    ApiCode.DUPLICATE_ORDER_NO: (409, "This client_order_no was used for an order with another body."),
    ApiCode.IDEMPOTENCY_KEY_REUSED: (422, "This Idempotency-Key was used with another request body."),
    ApiCode.IDEMPOTENCY_IN_PROGRESS: (409, "A request with this Idempotency-Key is still running; retry later."),
    ApiCode.BAD_CALLBACK_URL: (422, "The callback_url must be an http(s) URL of a public address."),
    ApiCode.NOT_REFUNDABLE: (409, "The order is not in a state that can be refunded."),
    ApiCode.BAD_TARGET: (422, "The target is missing or invalid for this SKU (recharge SKUs only take one)."),
    ApiCode.INTERNAL: (500, "The server failed; the request may be retried with the same Idempotency-Key."),
}


class ApiError(Exception):
    """A refusal with its code; `str()` is the fixed message (safe to log and to answer)."""

    def __init__(self, code: ApiCode) -> None:
        self.code = code
        self.status, self.message = ERRORS[code]
        super().__init__(self.message)
