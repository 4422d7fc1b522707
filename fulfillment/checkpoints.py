"""Named points in the payment and delivery paths where tests inject a competing action or a kill.

Production wires `NoCheckpoints`; race and crash tests wire their own (saleor's RunBefore/RunAfter idea).
"""

from __future__ import annotations

from typing import Protocol

PAYMENT_RECORDED = "payment.recorded"
PAYMENT_APPLIED = "payment.applied"
DELIVERY_SENT = "delivery.sent"


class Checkpoints(Protocol):
    def reach(self, name: str) -> None: ...


class NoCheckpoints:
    def reach(self, name: str) -> None:
        return None
