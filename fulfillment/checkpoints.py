"""Named points in the payment and delivery paths where tests inject a competing action or a kill.

Production wires `NoCheckpoints`; race and crash tests wire their own (saleor's RunBefore/RunAfter idea).
"""

from __future__ import annotations

from typing import Protocol

#: a payment event was taken from its provider (fetched or pushed) and is not yet recorded
PAYMENT_TAKEN = "payment.taken"
#: the payment is recorded and applied (codes allocated, outbox row written); provider not yet answered
PAYMENT_RECORDED = "payment.recorded"
#: the delivery worker has claimed the outbox row (codes counted as shown) and not yet sent it
DELIVERY_CLAIMED = "delivery.claimed"
#: the message is sent and the outbox row not yet marked done
DELIVERY_SENT = "delivery.sent"


class Checkpoints(Protocol):
    def reach(self, name: str) -> None: ...


class NoCheckpoints:
    def reach(self, name: str) -> None:
        return None
