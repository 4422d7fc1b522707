-- kamibot schema v21 (PostgreSQL): partial refunds and the commission they reverse (issue 15).
-- refund_parts: one row per partial refund of an order (a WeChat Pay refund of less than the payment), keyed by the
-- provider's refund id so a repeated notification books nothing. Its ledger line is a `refund` line like a full
-- refund's; the full refund that follows (kb_refund, below) books only what is left of the amount, and reverses
-- what is left of the distributor's commission in the same transaction.
-- distributor_ledger.part: the partial refund a reversal belongs to ('' for accruals, payouts and the final
-- reversal), so an order has one accrual, one reversal per partial refund and one final reversal, each at most once.
CREATE TABLE refund_parts (
    order_id BIGINT NOT NULL REFERENCES orders(id),
    refund_ref TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (order_id, refund_ref)
);
ALTER TABLE distributor_ledger ADD COLUMN part TEXT NOT NULL DEFAULT '';
DROP INDEX distributor_ledger_order_once;
CREATE UNIQUE INDEX distributor_ledger_order_once ON distributor_ledger (order_id, kind, part)
    WHERE order_id IS NOT NULL;

CREATE OR REPLACE FUNCTION kb_refund(p_order BIGINT, p_type TEXT, p_params JSONB, p_now TIMESTAMPTZ, p_refundable TEXT[],
                          p_holding TEXT[]) RETURNS BOOLEAN LANGUAGE plpgsql AS $$
DECLARE
    o orders; v_back BIGINT; v_before TEXT; r RECORD;
    v_codes BIGINT[]; v_costs BIGINT[]; v_ccys TEXT[]; v_parts BIGINT;
BEGIN
    SELECT * INTO o FROM orders WHERE id = p_order FOR UPDATE;
    IF NOT FOUND OR NOT (o.state = ANY (p_refundable)) THEN
        RETURN FALSE;
    END IF;
    -- what partial refunds gave back already is not refunded twice
    SELECT COALESCE(SUM(amount), 0) INTO v_parts FROM refund_parts WHERE refund_parts.order_id = o.id;
    IF o.amount - v_parts <> 0 AND EXISTS (SELECT 1 FROM ledger WHERE ledger.order_id = o.id AND kind = 'sale') THEN
        INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)
        VALUES (o.id, o.sku_id, o.channel, 'refund', o.currency, -(o.amount - v_parts), p_now);
    END IF;
    -- the distributor's commission: what the partial reversals left of the accrual, in this transaction (the
    -- commission pass would find it too: one final reversal per order, whoever writes it first)
    WITH ins AS (
        INSERT INTO distributor_ledger (distributor_id, currency, amount, kind, order_id, note, at, part)
        SELECT a.distributor_id, a.currency,
               -(a.amount + COALESCE((SELECT SUM(x.amount) FROM distributor_ledger x
                                       WHERE x.order_id = o.id AND x.kind = 'reversal'), 0)),
               'reversal', o.id, a.note, p_now, ''
          FROM distributor_ledger a WHERE a.order_id = o.id AND a.kind = 'accrual' AND a.amount <> 0
        ON CONFLICT (order_id, kind, part) WHERE order_id IS NOT NULL DO NOTHING
        RETURNING currency, amount)
    INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)
    SELECT o.id, o.sku_id, o.channel, 'commission', ins.currency, -ins.amount, p_now FROM ins WHERE ins.amount <> 0;
    -- the delivery rows first (lock order outbox -> items, as claim_outbox takes them)
    PERFORM 1 FROM outbox WHERE outbox.order_id = o.id AND status = 'pending' AND kind IN ('deliver', 'resend')
      ORDER BY id FOR UPDATE;
    WITH rel AS (UPDATE order_items SET released = TRUE
                  WHERE order_items.order_id = o.id AND revealed_at IS NULL AND NOT released
                 RETURNING item_no, code_id, unit_cost, cost_currency)
    SELECT array_agg(code_id ORDER BY item_no), array_agg(unit_cost ORDER BY item_no),
           array_agg(cost_currency ORDER BY item_no)
      INTO v_codes, v_costs, v_ccys FROM rel;
    v_back := COALESCE(cardinality(v_codes), 0);
    IF v_back > 0 THEN
        INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)
        SELECT o.id, o.sku_id, o.channel, 'cost_reversal', t.ccy, t.cost, p_now
          FROM unnest(v_costs, v_ccys) WITH ORDINALITY AS t(cost, ccy, n) WHERE t.cost <> 0 ORDER BY t.n;
        UPDATE outbox SET status = 'cancelled'
         WHERE outbox.order_id = o.id AND status = 'pending' AND kind IN ('deliver', 'resend');
    END IF;
    IF o.state = 'review' THEN
        SELECT from_state INTO v_before FROM order_events
         WHERE order_events.order_id = o.id AND to_state = 'review' AND from_state <> to_state
         ORDER BY id DESC LIMIT 1;
        IF v_before = ANY (p_holding) AND NOT o.backorder
           AND NOT EXISTS (SELECT 1 FROM order_items WHERE order_items.order_id = o.id) THEN
            v_back := v_back + o.quantity * o.units;
        END IF;
    END IF;
    IF v_back > 0 THEN
        UPDATE pools SET available = available + v_back WHERE id = o.pool_id;
    END IF;
    IF v_codes IS NOT NULL THEN
        FOR r IN SELECT u.code_id, COUNT(*) AS n FROM unnest(v_codes) AS u(code_id)
                  GROUP BY u.code_id ORDER BY u.code_id LOOP
            UPDATE codes SET uses_left = uses_left + r.n WHERE id = r.code_id;
        END LOOP;
    END IF;
    UPDATE orders SET state = 'refunded', updated_at = p_now WHERE id = o.id;
    INSERT INTO order_events (order_id, from_state, to_state, type, params, at)
    VALUES (o.id, o.state, 'refunded', p_type, p_params, p_now);
    RETURN TRUE;
END $$;
