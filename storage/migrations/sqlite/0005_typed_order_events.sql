-- kamibot schema v5 (SQLite): typed order events (storage/events.py). Each event is a type plus its parameters as
-- JSON; the free-text cause column is converted once, here, and dropped, so nothing can parse it again. Text that
-- matches no type becomes a `note` keeping the text. Risk holds kept in kv (`risk.review:<order id>`, comma-joined
-- rule ids) become `risk_flagged` notes on their orders. The partial index on the holding states becomes an index
-- on (state, expires_at): the holding states are a parameter of the queries now (fulfillment/orders.py HOLDING).
ALTER TABLE order_events ADD COLUMN type TEXT NOT NULL DEFAULT 'note';
ALTER TABLE order_events ADD COLUMN params TEXT NOT NULL DEFAULT '{}';
UPDATE order_events SET
    type = CASE
        WHEN cause = 'checkout' AND from_state IS NULL THEN 'checkout'
        WHEN cause = 'stock held' AND to_state = 'reserved' THEN 'stock_held'
        WHEN cause = 'invoice issued' AND to_state = 'awaiting_payment' THEN 'invoice_issued'
        WHEN cause = 'cancelled by customer' AND to_state = 'expired' THEN 'cancelled'
        WHEN cause = 'reservation ttl' AND to_state = 'expired' THEN 'reservation_expired'
        WHEN cause = 'payment amount or currency mismatch' AND to_state = 'review' THEN 'payment_mismatch'
        WHEN cause = 'codes allocated' AND to_state = 'delivering' THEN 'codes_allocated'
        WHEN cause = 'out of stock after payment' AND to_state = 'failed' THEN 'out_of_stock'
        WHEN to_state = 'paid' AND cause LIKE 'payment %:%' THEN 'payment_received'
        WHEN to_state = 'review' AND cause LIKE 'risk review: %' THEN 'risk_review'
        WHEN to_state = 'delivered' AND cause GLOB 'outbox [0-9]* sent' THEN 'delivered'
        WHEN from_state = 'review' AND to_state <> 'refunded' AND cause LIKE 'approved by %' THEN 'review_approved'
        WHEN to_state = 'refunded' AND from_state <> to_state THEN 'refunded'
        WHEN from_state = to_state AND cause LIKE 'dispute:%' THEN 'dispute'
        ELSE 'note'
    END;
UPDATE order_events SET params = CASE type
    WHEN 'payment_received' THEN json_object(
        'provider', substr(cause, 9, instr(cause, ':') - 9), 'txn', substr(cause, instr(cause, ':') + 1))
    WHEN 'risk_review' THEN json_object('reasons', json(
        '["' || replace(replace(replace(substr(cause, 14), '\', '\\'), '"', '\"'), ',', '","') || '"]'))
    WHEN 'delivered' THEN json_object('outbox_id', CAST(substr(cause, 8, length(cause) - 12) AS INTEGER))
    WHEN 'review_approved' THEN json_object('actor', substr(cause, 13))
    WHEN 'refunded' THEN json_object('reason', cause)
    WHEN 'dispute' THEN json_object('source', substr(cause, 9))
    WHEN 'note' THEN json_object('text', cause)
    ELSE '{}'
END;
ALTER TABLE order_events DROP COLUMN cause;
INSERT INTO order_events (order_id, from_state, to_state, type, params, at)
SELECT o.id, o.state, o.state, 'risk_flagged', json_object('reasons', json(
           '["' || replace(replace(replace(kv.value, '\', '\\'), '"', '\"'), ',', '","') || '"]')), o.updated_at
  FROM kv JOIN orders o ON o.id = CAST(substr(kv.key, 13) AS INTEGER)
 WHERE kv.key LIKE 'risk.review:%' AND (kv.expires_at IS NULL OR kv.expires_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
 ORDER BY o.id;
DELETE FROM kv WHERE key LIKE 'risk.review:%';
DROP INDEX orders_holding;
CREATE INDEX orders_state_expiry ON orders (state, expires_at)
