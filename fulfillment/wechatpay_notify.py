"""WeChat Pay notifications: authenticate, decrypt, match against the order, record once.

Order of checks (https://pay.weixin.qq.com/doc/v3/merchant/4012791861): signature type, timestamp within five
minutes, signature with the key named by `Wechatpay-Serial`, nonce not used by a notification we already
processed (shared by all processes), then the AEAD_AES_256_GCM resource. A transaction is recorded through the
PaymentInbox keyed by `transaction_id`, so a repeated notification, the reconciliation job and a retry all
deliver once.

The nonce is claimed only once the notification was processed (its payment recorded): when recording fails
(database restart, crash) WeChat Pay's retry of the identical request is processed, not refused. A replay of an
already processed notification (the signature binds its nonce to its bytes) is answered with success and changes
nothing, so a lost answer does not leave WeChat Pay retrying for a day.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from fulfillment.errors import PaymentRejected
from fulfillment.payments import PaymentInbox
from fulfillment.wechatpay import WeChatPayConfig, order_ref_of
from fulfillment.wechatpay_crypto import DecryptError, SignatureError, decrypt_resource, verify_signed
from storage import events
from storage.protocol import Store
from storage.protocols.distributors import PartRefund
from storage.protocols.payments_extra import REFUNDED_DETAIL
from storage.records import Order, PaymentApplied, PaymentEventIn

#: what happens after a transaction was recorded (fulfillment/wechatpay_extra.AfterPayment.settle)
Settle = Callable[[Order, str, PaymentEventIn, PaymentApplied], Awaitable[str]]

log = logging.getLogger("kamibot.wechatpay")
PROVIDER = "wechatpay"
NONCE_SCOPE = "wechatpay.nonce"
#: a nonce must stay claimed for longer than the ±5 minute window in which its signature is accepted
NONCE_KEEP = timedelta(minutes=15)


class NotifyRejected(Exception):
    """Answered with `{"code": "FAIL", "message": …}` and this status so WeChat Pay retries; nothing changed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


class WeChatPayNotifications:
    def __init__(self, store: Store, inbox: PaymentInbox, config: WeChatPayConfig,
                 fingerprint: Callable[[str], str], clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 on_failed_payment: Callable[[Order, str], Awaitable[None]] | None = None,
                 after_payment: Settle | None = None) -> None:
        self.store = store
        self.inbox = inbox
        self.config = config
        #: keyed hash of a payer identity, the same one the risk module sees at every stage
        self.fingerprint = fingerprint
        #: told of a payment error (the risk module counts failed attempts); never blocks the answer
        self.on_failed_payment = on_failed_payment
        #: refunds a second payment, announces a held one, closes the order's other trade numbers
        self.after_payment = after_payment
        self.clock = clock

    async def handle(self, headers: Mapping[str, str], body: bytes) -> str:
        """Process one POST /pay/wechat/notify; returns the outcome, or raises NotifyRejected."""
        now = self.clock()
        try:
            text = body.decode("utf-8")
            nonce = verify_signed(self.config.platform_keys, headers, text, now)
        except (UnicodeDecodeError, SignatureError) as exc:
            log.warning("event=wechatpay.notify_rejected reason=%r", str(exc)[:80])
            raise NotifyRejected(401, "signature verification failed") from None
        if await self.store.once_claimed(NONCE_SCOPE, nonce, now):
            # the signature binds this nonce to these bytes: the same notification, already processed
            log.info("event=wechatpay.notify_replayed")
            return "replayed"
        event_type, resource = self._open(text)
        if event_type.startswith("TRANSACTION."):
            outcome = await self.apply_transaction(resource)
        elif event_type.startswith("REFUND."):
            outcome = await self.apply_refund(resource)
        else:
            log.info("event=wechatpay.notify_ignored event_type=%r", event_type[:40])
            outcome = "ignored"
        # claimed once processed: a failure above leaves the nonce free for WeChat Pay's retry
        await self.store.claim_once(NONCE_SCOPE, nonce, now + NONCE_KEEP, now)
        return outcome

    def _open(self, text: str) -> tuple[str, dict[str, Any]]:
        try:
            envelope = json.loads(text)
            resource = envelope["resource"]
            if envelope.get("resource_type") != "encrypt-resource" or resource["algorithm"] != "AEAD_AES_256_GCM":
                raise ValueError("unsupported resource")
            plain = decrypt_resource(self.config.api_v3_key, str(resource["nonce"]), str(resource["ciphertext"]),
                                     str(resource.get("associated_data") or ""))
            data = json.loads(plain)
            if not isinstance(data, dict):
                raise ValueError("resource is not an object")
            return str(envelope.get("event_type", "")), data
        except DecryptError:
            log.warning("event=wechatpay.notify_rejected reason=decrypt")
            raise NotifyRejected(400, "resource decryption failed") from None
        except (ValueError, TypeError, KeyError):
            log.warning("event=wechatpay.notify_rejected reason=malformed")
            raise NotifyRejected(400, "malformed notification") from None

    def payer_fingerprint(self, openid: str) -> str:
        return self.fingerprint(f"wechat:{openid}") if openid else ""

    async def apply_transaction(self, tx: Mapping[str, Any]) -> str:
        """A transaction (from a notification or a query): check it is ours and this order's, then record it."""
        if _text(tx, "mchid") != self.config.mchid or _text(tx, "appid") != self.config.app_id:
            log.warning("event=wechatpay.foreign_transaction")
            raise NotifyRejected(400, "mchid or appid does not match")
        trade_no = _text(tx, "out_trade_no")
        order = await self.store.order_by_ref(order_ref_of(trade_no)) if trade_no else None
        if order is None:
            log.warning("event=wechatpay.unknown_order")
            raise NotifyRejected(404, "unknown order")
        state = _text(tx, "trade_state")
        if state != "SUCCESS":
            log.info("event=wechatpay.not_paid order_id=%s trade_state=%r", order.id, state[:20])
            if state == "PAYERROR" and self.on_failed_payment is not None:
                payer = tx.get("payer")
                await self.on_failed_payment(order, self.payer_fingerprint(
                    _text(payer, "openid") if isinstance(payer, dict) else ""))
            return "not_paid"
        amount = tx.get("amount")
        total = amount.get("total") if isinstance(amount, dict) else None
        currency = _text(amount, "currency") if isinstance(amount, dict) else ""
        txn = _text(tx, "transaction_id")
        if not isinstance(total, int) or isinstance(total, bool) or not txn:
            raise NotifyRejected(400, "transaction lacks amount or transaction_id")
        if (total, currency) != (order.amount, order.currency):
            # money really moved (the notification is signed): the inbox holds the order for review, no delivery;
            # the event keeps the amount actually paid
            log.warning("event=wechatpay.amount_mismatch order_id=%s", order.id)
        payer = tx.get("payer")
        openid = _text(payer, "openid") if isinstance(payer, dict) else ""
        event = PaymentEventIn(PROVIDER, txn, order.ref, total, currency, payer=self.payer_fingerprint(openid))
        try:
            result = await self.inbox.receive(event)
        except PaymentRejected:
            raise NotifyRejected(400, "transaction amount or currency invalid") from None
        if self.after_payment is not None:
            return await self.after_payment(order, trade_no, event, result)
        return result.outcome.value

    async def _refund_part(self, order: Order, data: Mapping[str, Any], refunded: object) -> PartRefund:
        """A refund of part of the payment (made in the merchant platform): its refund line and the distributor's
        commission share, once per refund_id. The part that gives back the rest is the order's full refund."""
        refund_id = _text(data, "refund_id")
        if not isinstance(refunded, int) or isinstance(refunded, bool) or not refund_id:
            raise NotifyRejected(400, "refund lacks amount or refund_id")
        part = await self.store.refund_part(order.id, "wechatpay:" + refund_id[:64], refunded, self.clock())
        level = logging.WARNING if part in (PartRefund.TOO_BIG, PartRefund.NOT_REFUNDABLE) else logging.INFO
        log.log(level, "event=wechatpay.partial_refund order_id=%s outcome=%s", order.id, part.value)
        return part

    async def apply_refund(self, data: Mapping[str, Any]) -> str:
        """REFUND.SUCCESS for the whole payment of an order → refunded with its ledger lines (idempotent)."""
        if _text(data, "mchid") != self.config.mchid:
            raise NotifyRejected(400, "mchid does not match")
        trade_no = _text(data, "out_trade_no")
        order = await self.store.order_by_ref(order_ref_of(trade_no)) if trade_no else None
        if order is None:
            raise NotifyRejected(404, "unknown order")
        payment = await self.store.order_payment(order.id)
        txn = _text(data, "transaction_id")
        if payment is not None and payment[1] != txn:
            extra = await self.store.payment_record(PROVIDER, txn)
            if extra is not None and extra.detail.startswith(REFUNDED_DETAIL):
                return "extra_refunded"  # the refund of a second payment (fulfillment/wechatpay_extra.py)
        if payment is None or payment[0] != PROVIDER or payment[1] != txn:
            log.warning("event=wechatpay.refund_mismatch order_id=%s", order.id)
            raise NotifyRejected(400, "refund does not match the order's payment")
        status = _text(data, "refund_status")
        if status != "SUCCESS":
            log.warning("event=wechatpay.refund_not_successful order_id=%s refund_status=%r", order.id, status[:20])
            return "refund_" + status.lower()[:20]
        amount = data.get("amount")
        refunded = amount.get("refund") if isinstance(amount, dict) else None
        if refunded != payment[2]:
            part = await self._refund_part(order, data, refunded)
            if part is not PartRefund.COMPLETES:
                return "partial_refund_" + part.value
        done = await self.store.refund(order.id, events.refunded(
            reason=f"wechatpay refund {_text(data, 'refund_id')[:64]}"), self.clock())
        log.info("event=wechatpay.refunded order_id=%s recorded=%s", order.id, done)
        return "refunded" if done else "already_refunded"
