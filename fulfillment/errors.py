"""Domain errors; each carries a locale message id the conversation layer translates."""

from __future__ import annotations


class ShopError(Exception):
    """A refusal the customer or merchant should read; `message_id` is in locales/."""

    message_id = "error.generic"

    def __init__(self, detail: str = "", **params: object) -> None:
        super().__init__(detail or self.message_id)
        self.params = params


class UnknownSku(ShopError):
    message_id = "error.unknown_sku"


class UnknownOrder(ShopError):
    message_id = "error.unknown_order"


class BadQuantity(ShopError):
    message_id = "error.bad_quantity"


class OutOfStock(ShopError):
    message_id = "error.out_of_stock"


class LimitReached(ShopError):
    message_id = "error.limit_reached"


class NoPrice(ShopError):
    message_id = "error.no_price"


class PriceChanged(ShopError):
    """The customer confirmed a price that is no longer the SKU's price."""

    message_id = "shop.price_changed"


class BadPrice(ShopError):
    message_id = "error.bad_price"


class NotAllowed(ShopError):
    message_id = "error.not_allowed"


class PaymentRejected(ShopError):
    message_id = "error.payment_rejected"


class RiskDenied(ShopError):
    """Refused by a risk rule; the customer reads a polite message, the merchant the rule ids."""

    message_id = "error.risk_denied"


class RiskChallenge(ShopError):
    """A cool-down before the order may continue (`seconds` is how long to wait)."""

    message_id = "error.risk_challenge"


class ImportRefused(ShopError):
    message_id = "error.import_refused"


class BadInput(ShopError):
    message_id = "error.bad_input"


class NoCodes(ShopError):
    """The order has no codes to report or replace (not delivered); `ref` names it."""

    message_id = "orders.no_codes"


class ReplaceWhichItem(ShopError):
    """A replacement needs the item: no open bad-code report and no such item number (`ref`, `items`)."""

    message_id = "ticket.replace_which_item"


class NoReplacementStock(ShopError):
    """No stock left in the order's pool for a replacement; nothing was changed (`ref`)."""

    message_id = "ticket.replace_no_stock"


class AlreadyReplaced(ShopError):
    """The chosen code was already replaced; nothing was changed (`ref`)."""

    message_id = "ticket.replace_nothing"


class VaultError(Exception):
    """The vault cannot be opened safely; the message names files and key ids, never key bytes."""


class VaultTampered(VaultError):
    """A ciphertext failed authentication: tampered, swapped between rows, or the wrong key."""


class InvalidTarget(ShopError):
    """A recharge SKU's target (mobile number, account id) is missing or does not fit the SKU's rule; no order.
    The message says why: `recharge.bad.<reason>` (fulfillment.recharge_target.BadTarget.REASONS)."""

    message_id = "recharge.invalid_target"

    def __init__(self, detail: str = "", reason: str = "", **params: object) -> None:
        super().__init__(detail, **params)
        if reason:
            self.message_id = f"recharge.bad.{reason}"
