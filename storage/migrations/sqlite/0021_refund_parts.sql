-- kamibot schema v21 (SQLite): partial refunds and the commission they reverse (issue 15).
-- refund_parts: one row per partial refund of an order (a WeChat Pay refund of less than the payment), keyed by the
-- provider's refund id so a repeated notification books nothing. Its ledger line is a `refund` line like a full
-- refund's; the full refund that follows books only what is left of the amount.
-- distributor_ledger.part: the partial refund a reversal belongs to ('' for accruals, payouts and the final
-- reversal), so an order has one accrual, one reversal per partial refund and one final reversal, each at most once.
CREATE TABLE refund_parts (
    order_id INTEGER NOT NULL REFERENCES orders(id),
    refund_ref TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (order_id, refund_ref)
);
ALTER TABLE distributor_ledger ADD COLUMN part TEXT NOT NULL DEFAULT '';
DROP INDEX distributor_ledger_order_once;
CREATE UNIQUE INDEX distributor_ledger_order_once ON distributor_ledger (order_id, kind, part)
    WHERE order_id IS NOT NULL
