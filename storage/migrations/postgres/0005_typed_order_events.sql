-- kamibot schema v5 (PostgreSQL): typed order events (storage/events.py), as sqlite/0005_typed_order_events.sql.
-- Each event is a type plus its parameters as JSONB; the free-text cause column is converted once, here, and
-- dropped, so nothing can parse it again. Text that matches no type becomes a `note` keeping the text. Risk holds
-- kept in kv (`risk.review:<order id>`) become `risk_flagged` notes. The functions that write events or decide by
-- state take the event type and parameters and the state groups (fulfillment/orders.py) as arguments.
ALTER TABLE order_events ADD COLUMN type TEXT NOT NULL DEFAULT 'note';
ALTER TABLE order_events ADD COLUMN params JSONB NOT NULL DEFAULT '{}';
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
        WHEN to_state = 'delivered' AND cause ~ '^outbox [0-9]+ sent$' THEN 'delivered'
        WHEN from_state = 'review' AND to_state <> 'refunded' AND cause LIKE 'approved by %' THEN 'review_approved'
        WHEN to_state = 'refunded' AND from_state <> to_state THEN 'refunded'
        WHEN from_state = to_state AND cause LIKE 'dispute:%' THEN 'dispute'
        ELSE 'note'
    END;
UPDATE order_events SET params = CASE type
    WHEN 'payment_received' THEN jsonb_build_object(
        'provider', split_part(substr(cause, 9), ':', 1), 'txn', substr(cause, 9 + strpos(substr(cause, 9), ':')))
    WHEN 'risk_review' THEN jsonb_build_object('reasons', to_jsonb(string_to_array(substr(cause, 14), ',')))
    WHEN 'delivered' THEN jsonb_build_object('outbox_id', substr(cause, 8, length(cause) - 12)::BIGINT)
    WHEN 'review_approved' THEN jsonb_build_object('actor', substr(cause, 13))
    WHEN 'refunded' THEN jsonb_build_object('reason', cause)
    WHEN 'dispute' THEN jsonb_build_object('source', substr(cause, 9))
    WHEN 'note' THEN jsonb_build_object('text', cause)
    ELSE '{}'::jsonb
END;
ALTER TABLE order_events DROP COLUMN cause;
INSERT INTO order_events (order_id, from_state, to_state, type, params, at)
SELECT o.id, o.state, o.state, 'risk_flagged',
       jsonb_build_object('reasons', to_jsonb(string_to_array(kv.value, ','))), o.updated_at
  FROM kv JOIN orders o ON o.id::TEXT = substr(kv.key, 13)
 WHERE kv.key LIKE 'risk.review:%' AND (kv.expires_at IS NULL OR kv.expires_at > now())
 ORDER BY o.id;
DELETE FROM kv WHERE key LIKE 'risk.review:%';
DROP INDEX orders_holding;
CREATE INDEX orders_state_expiry ON orders (state, expires_at);

DROP FUNCTION kb_reserve(TEXT, TEXT, TEXT, TEXT, BIGINT, BIGINT, BIGINT, TEXT, TIMESTAMPTZ, TEXT, TIMESTAMPTZ);
DROP FUNCTION kb_transition(BIGINT, TEXT[], TEXT, TEXT, TIMESTAMPTZ);
DROP FUNCTION kb_expire(TIMESTAMPTZ, BIGINT);
DROP FUNCTION kb_receive(TEXT, TEXT, TEXT, BIGINT, TEXT, BIGINT, TEXT, TIMESTAMPTZ, TIMESTAMPTZ);
DROP FUNCTION kb_apply_payment(BIGINT, TIMESTAMPTZ);
DROP FUNCTION kb_apply_event(payment_events, TIMESTAMPTZ);
DROP FUNCTION kb_complete_outbox(BIGINT, TIMESTAMPTZ);
DROP FUNCTION kb_refund(BIGINT, TEXT, TIMESTAMPTZ);

CREATE FUNCTION kb_reserve(p_ref TEXT, p_channel TEXT, p_user TEXT, p_chat TEXT, p_sku BIGINT, p_qty BIGINT,
                           p_amount BIGINT, p_currency TEXT, p_expires TIMESTAMPTZ, p_lang TEXT, p_now TIMESTAMPTZ,
                           p_closed TEXT[])
RETURNS orders LANGUAGE plpgsql AS $$
DECLARE
    v_pool BIGINT; v_units BIGINT; v_limit BIGINT; v_bought BIGINT; v_need BIGINT; o orders;
BEGIN
    SELECT s.pool_id, s.units, s.per_user_limit INTO v_pool, v_units, v_limit
      FROM skus s JOIN products p ON p.id = s.product_id WHERE s.id = p_sku AND s.active AND p.active;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'sku % unknown or inactive', p_sku USING ERRCODE = 'KB001';
    END IF;
    IF v_limit > 0 THEN
        -- one user's concurrent checkouts of one SKU take turns, so the limit cannot be raced
        PERFORM pg_advisory_xact_lock(hashtext(p_channel || ':' || p_user || ':' || p_sku));
        SELECT COALESCE(SUM(quantity), 0) INTO v_bought FROM orders
         WHERE user_id = p_user AND channel = p_channel AND sku_id = p_sku
           AND NOT (state = ANY (p_closed));
        IF v_bought + p_qty > v_limit THEN
            RAISE EXCEPTION 'sku % per-user limit %', p_sku, v_limit USING ERRCODE = 'KB002';
        END IF;
    END IF;
    v_need := p_qty * v_units;
    UPDATE pools SET available = available - v_need WHERE id = v_pool AND available >= v_need;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pool % cannot hold % uses', v_pool, v_need USING ERRCODE = 'KB003';
    END IF;
    INSERT INTO orders (ref, channel, user_id, chat_id, sku_id, pool_id, quantity, units, amount, currency, state,
                        language, created_at, expires_at, updated_at)
    VALUES (p_ref, p_channel, p_user, p_chat, p_sku, v_pool, p_qty, v_units, p_amount, p_currency, 'reserved',
            p_lang, p_now, p_expires, p_now)
    RETURNING * INTO o;
    INSERT INTO order_events (order_id, from_state, to_state, type, params, at)
    VALUES (o.id, NULL, 'created', 'checkout', '{}', p_now), (o.id, 'created', 'reserved', 'stock_held', '{}', p_now);
    RETURN o;
END $$;

CREATE FUNCTION kb_transition(p_order BIGINT, p_allowed TEXT[], p_to TEXT, p_type TEXT, p_params JSONB,
                              p_now TIMESTAMPTZ, p_holding TEXT[])
RETURNS BOOLEAN LANGUAGE plpgsql AS $$
DECLARE
    v_state TEXT; v_pool BIGINT; v_uses BIGINT;
BEGIN
    SELECT state, pool_id, quantity * units INTO v_state, v_pool, v_uses FROM orders WHERE id = p_order FOR UPDATE;
    IF NOT FOUND OR NOT (v_state = ANY (p_allowed)) THEN
        RETURN FALSE;
    END IF;
    IF v_state = ANY (p_holding) AND NOT (p_to = ANY (p_holding)) AND p_to <> 'review' THEN
        -- leaving a reservation without paying hands the held uses back
        UPDATE pools SET available = available + v_uses WHERE id = v_pool;
    END IF;
    UPDATE orders SET state = p_to, updated_at = p_now WHERE id = p_order;
    INSERT INTO order_events (order_id, from_state, to_state, type, params, at)
    VALUES (p_order, v_state, p_to, p_type, p_params, p_now);
    RETURN TRUE;
END $$;

CREATE FUNCTION kb_expire(p_now TIMESTAMPTZ, p_limit BIGINT, p_holding TEXT[]) RETURNS SETOF BIGINT LANGUAGE plpgsql AS $$
DECLARE
    v_ids BIGINT[]; v_states TEXT[]; r RECORD;
BEGIN
    -- orders another transaction holds (a payment being applied) are skipped, not waited for
    SELECT array_agg(h.id ORDER BY h.expires_at, h.id), array_agg(h.state ORDER BY h.expires_at, h.id)
      INTO v_ids, v_states
      FROM (SELECT id, state, expires_at FROM orders
             WHERE state = ANY (p_holding) AND expires_at <= p_now
             ORDER BY expires_at, id LIMIT p_limit FOR UPDATE SKIP LOCKED) h;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    FOR r IN SELECT pool_id, SUM(quantity * units) AS uses FROM orders WHERE id = ANY (v_ids)
              GROUP BY pool_id ORDER BY pool_id LOOP
        UPDATE pools SET available = available + r.uses WHERE id = r.pool_id;
    END LOOP;
    UPDATE orders SET state = 'expired', updated_at = p_now WHERE id = ANY (v_ids);
    INSERT INTO order_events (order_id, from_state, to_state, type, params, at)
    SELECT t.id, t.state, 'expired', 'reservation_expired', '{}', p_now
      FROM unnest(v_ids, v_states) WITH ORDINALITY AS t(id, state, n) ORDER BY t.n;
    RETURN QUERY SELECT t.id FROM unnest(v_ids) WITH ORDINALITY AS t(id, n) ORDER BY t.n;
END $$;

-- Apply one locked, unapplied payment event: mark paid, allocate, write items, ledger, events and the outbox row
-- (invariant 2), or hold / fail it exactly as sqlite_orders._apply does.
CREATE FUNCTION kb_apply_event(ev payment_events, p_now TIMESTAMPTZ, p_payable TEXT[],
                               OUT event_id BIGINT, OUT outcome TEXT, OUT order_id BIGINT, OUT detail TEXT)
LANGUAGE plpgsql AS $$
DECLARE
    o orders; v_need BIGINT; v_taken BIGINT := 0; v_paid JSONB; v_ok BOOLEAN := TRUE; v_spins INT := 0;
    v_code BIGINT; v_first BIGINT; v_k BIGINT; v_cost BIGINT; v_ccy TEXT; v_n BIGINT;
    v_codes BIGINT[] := '{}'; v_use_nos BIGINT[] := '{}'; v_costs BIGINT[] := '{}'; v_ccys TEXT[] := '{}';
BEGIN
    event_id := ev.id;
    SELECT * INTO o FROM orders WHERE ref = ev.order_ref FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'unknown_order'; detail := 'no such order';
    ELSIF NOT (o.state = ANY (p_payable)) THEN
        outcome := 'review'; order_id := o.id; detail := 'payment for order in ' || o.state;
    ELSIF ev.amount <> o.amount OR ev.currency <> o.currency THEN
        -- a held reservation keeps its stock while the merchant reviews; refund hands it back
        UPDATE orders SET state = 'review', updated_at = p_now WHERE id = o.id;
        INSERT INTO order_events (order_id, from_state, to_state, type, params, at)
        VALUES (o.id, o.state, 'review', 'payment_mismatch', '{}', p_now);
        outcome := 'review'; order_id := o.id; detail := 'amount or currency mismatch';
    END IF;
    IF outcome IS NOT NULL THEN
        UPDATE payment_events SET applied_at = p_now, outcome = kb_apply_event.outcome,
               order_id = kb_apply_event.order_id, detail = kb_apply_event.detail WHERE id = ev.id;
        RETURN;
    END IF;
    order_id := o.id;
    v_need := o.quantity * o.units;
    v_paid := jsonb_build_object('provider', ev.provider, 'txn', ev.provider_txn_id);
    IF o.state = 'expired' THEN
        -- a late payment: its reservation was handed back, take the uses again if the pool still has them
        UPDATE pools SET available = available - v_need WHERE id = o.pool_id AND available >= v_need;
        v_ok := FOUND;
    END IF;
    WHILE v_ok AND v_taken < v_need LOOP
        -- the oldest claimable code nobody else holds; as many of its uses as still needed
        WITH c AS (SELECT id, uses_left FROM codes
                    WHERE pool_id = o.pool_id AND uses_left > 0 AND status = 'available'
                      AND (expires_at IS NULL OR expires_at > p_now)
                    ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
        UPDATE codes SET uses_left = codes.uses_left - LEAST(c.uses_left, v_need - v_taken) FROM c
         WHERE codes.id = c.id
        RETURNING codes.id, codes.uses_total, LEAST(c.uses_left, v_need - v_taken), codes.unit_cost,
                  codes.cost_currency
        INTO v_code, v_first, v_k, v_cost, v_ccy;
        IF NOT FOUND THEN
            -- every claimable code is held by other buyers (a few multi-use codes): wait for one rather
            -- than report a false shortage
            WITH c AS (SELECT id, uses_left FROM codes
                        WHERE pool_id = o.pool_id AND uses_left > 0 AND status = 'available'
                          AND (expires_at IS NULL OR expires_at > p_now)
                        ORDER BY id LIMIT 1 FOR UPDATE)
            UPDATE codes SET uses_left = codes.uses_left - LEAST(c.uses_left, v_need - v_taken) FROM c
             WHERE codes.id = c.id
            RETURNING codes.id, codes.uses_total, LEAST(c.uses_left, v_need - v_taken), codes.unit_cost,
                      codes.cost_currency
            INTO v_code, v_first, v_k, v_cost, v_ccy;
            IF NOT FOUND THEN
                v_spins := v_spins + 1;
                EXIT WHEN v_spins > 20 OR NOT EXISTS (
                    SELECT 1 FROM codes WHERE pool_id = o.pool_id AND uses_left > 0 AND status = 'available'
                       AND (expires_at IS NULL OR expires_at > p_now));
                CONTINUE;
            END IF;
        END IF;
        -- use numbers: the smallest ones no live item of this code holds (a refund can free a middle one);
        -- the code row is locked by us, and one order visits a code once
        FOR v_n IN SELECT g FROM generate_series(1, v_first) AS g
                    WHERE NOT EXISTS (SELECT 1 FROM order_items i
                                       WHERE i.code_id = v_code AND i.use_no = g AND NOT i.released)
                    ORDER BY g LIMIT v_k LOOP
            v_codes := v_codes || v_code;
            v_use_nos := v_use_nos || v_n;
            v_costs := v_costs || v_cost;
            v_ccys := v_ccys || v_ccy;
        END LOOP;
        v_taken := v_taken + v_k;
    END LOOP;
    IF v_taken < v_need THEN
        -- paid but the pool cannot serve it: put back what was taken, fail, queue the refund
        UPDATE codes SET uses_left = codes.uses_left + t.n
          FROM (SELECT u.code_id, COUNT(*) AS n FROM unnest(v_codes) AS u(code_id) GROUP BY u.code_id) t
         WHERE codes.id = t.code_id;
        UPDATE orders SET state = 'failed', updated_at = p_now WHERE id = o.id;
        INSERT INTO order_events (order_id, from_state, to_state, type, params, at)
        VALUES (o.id, o.state, 'paid', 'payment_received', v_paid, p_now),
               (o.id, 'paid', 'failed', 'out_of_stock', '{}', p_now);
        INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)
        SELECT o.id, o.sku_id, o.channel, x.kind, ev.currency, x.amount, p_now
          FROM (VALUES (1, 'sale', ev.amount), (2, 'fee', -ev.fee)) AS x(n, kind, amount)
         WHERE x.n = 1 OR ev.fee <> 0 ORDER BY x.n;
        INSERT INTO outbox (order_id, kind, channel, chat_id, payload, next_attempt_at, created_at)
        VALUES (o.id, 'refund', o.channel, o.chat_id,
                '{"provider": ' || kb_json_str(ev.provider) || ', "txn": ' || kb_json_str(ev.provider_txn_id)
                || ', "amount": ' || ev.amount || '}', p_now, p_now);
        outcome := 'failed'; detail := 'out of stock';
        UPDATE payment_events SET applied_at = p_now, outcome = 'failed', order_id = o.id, detail = 'out of stock'
         WHERE id = ev.id;
        RETURN;
    END IF;
    INSERT INTO order_items (order_id, item_no, code_id, use_no, unit_cost, cost_currency)
    SELECT o.id, t.n, t.code_id, t.use_no, t.cost, t.ccy
      FROM unnest(v_codes, v_use_nos, v_costs, v_ccys) WITH ORDINALITY AS t(code_id, use_no, cost, ccy, n);
    INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)
    SELECT o.id, o.sku_id, o.channel, x.kind, x.currency, x.amount, p_now FROM (
        SELECT -1 AS n, 'sale' AS kind, ev.currency AS currency, ev.amount AS amount
        UNION ALL SELECT 0, 'fee', ev.currency, -ev.fee WHERE ev.fee <> 0
        UNION ALL SELECT MIN(t.n), 'cost', t.ccy, -SUM(t.cost)::BIGINT
                    FROM unnest(v_ccys, v_costs) WITH ORDINALITY AS t(ccy, cost, n)
                   GROUP BY t.ccy HAVING SUM(t.cost) <> 0) x
     ORDER BY x.n;
    UPDATE orders SET state = 'delivering', updated_at = p_now WHERE id = o.id;
    INSERT INTO order_events (order_id, from_state, to_state, type, params, at)
    VALUES (o.id, o.state, 'paid', 'payment_received', v_paid, p_now),
           (o.id, 'paid', 'delivering', 'codes_allocated', '{}', p_now);
    INSERT INTO outbox (order_id, kind, channel, chat_id, payload, next_attempt_at, created_at)
    VALUES (o.id, 'deliver', o.channel, o.chat_id, '', p_now, p_now);
    outcome := 'allocated'; detail := '';
    UPDATE payment_events SET applied_at = p_now, outcome = 'allocated', order_id = o.id, detail = ''
     WHERE id = ev.id;
END $$;

CREATE FUNCTION kb_apply_payment(p_event BIGINT, p_now TIMESTAMPTZ, p_payable TEXT[],
                                 OUT event_id BIGINT, OUT outcome TEXT, OUT order_id BIGINT, OUT detail TEXT)
LANGUAGE plpgsql AS $$
DECLARE
    ev payment_events;
BEGIN
    SELECT * INTO ev FROM payment_events WHERE id = p_event FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'payment event %', p_event USING ERRCODE = 'KB001';
    END IF;
    IF ev.applied_at IS NOT NULL THEN
        event_id := ev.id; outcome := 'already_applied'; order_id := ev.order_id;
        detail := COALESCE(NULLIF(ev.outcome, ''), ev.detail);
        RETURN;
    END IF;
    SELECT * INTO event_id, outcome, order_id, detail FROM kb_apply_event(ev, p_now, p_payable);
END $$;

-- record and apply in one transaction (the hot path); a repeated notification finds the first outcome
CREATE FUNCTION kb_receive(p_provider TEXT, p_txn TEXT, p_ref TEXT, p_amount BIGINT, p_currency TEXT, p_fee BIGINT,
                           p_payer TEXT, p_received TIMESTAMPTZ, p_now TIMESTAMPTZ, p_payable TEXT[],
                           OUT event_id BIGINT, OUT outcome TEXT, OUT order_id BIGINT, OUT detail TEXT)
LANGUAGE plpgsql AS $$
DECLARE
    ev payment_events;
BEGIN
    INSERT INTO payment_events (provider, provider_txn_id, order_ref, amount, currency, fee, payer, received_at)
    VALUES (p_provider, p_txn, p_ref, p_amount, p_currency, p_fee, p_payer, p_received)
    ON CONFLICT (provider, provider_txn_id) DO NOTHING RETURNING * INTO ev;
    IF ev.id IS NOT NULL THEN
        SELECT * INTO event_id, outcome, order_id, detail FROM kb_apply_event(ev, p_now, p_payable);
    ELSE
        SELECT * INTO event_id, outcome, order_id, detail FROM kb_apply_payment(
            (SELECT e.id FROM payment_events e WHERE e.provider = p_provider AND e.provider_txn_id = p_txn), p_now, p_payable);
    END IF;
END $$;

CREATE FUNCTION kb_complete_outbox(p_outbox BIGINT, p_now TIMESTAMPTZ) RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    v_order BIGINT; v_kind TEXT;
BEGIN
    UPDATE outbox SET status = 'done', done_at = p_now, locked_until = NULL WHERE id = p_outbox AND status <> 'done'
    RETURNING order_id, kind INTO v_order, v_kind;
    IF NOT FOUND OR v_kind <> 'deliver' THEN
        RETURN;
    END IF;
    UPDATE orders SET state = 'delivered', updated_at = p_now WHERE id = v_order AND state = 'delivering';
    IF FOUND THEN
        INSERT INTO order_events (order_id, from_state, to_state, type, params, at)
        VALUES (v_order, 'delivering', 'delivered', 'delivered', jsonb_build_object('outbox_id', p_outbox), p_now);
    END IF;
END $$;

-- mark refunded, write refund ledger lines, return never-shown uses to stock (sqlite_orders.refund)
CREATE FUNCTION kb_refund(p_order BIGINT, p_type TEXT, p_params JSONB, p_now TIMESTAMPTZ, p_refundable TEXT[],
                          p_holding TEXT[]) RETURNS BOOLEAN LANGUAGE plpgsql AS $$
DECLARE
    o orders; v_back BIGINT; v_before TEXT; r RECORD;
    v_codes BIGINT[]; v_costs BIGINT[]; v_ccys TEXT[];
BEGIN
    SELECT * INTO o FROM orders WHERE id = p_order FOR UPDATE;
    IF NOT FOUND OR NOT (o.state = ANY (p_refundable)) THEN
        RETURN FALSE;
    END IF;
    IF EXISTS (SELECT 1 FROM ledger WHERE ledger.order_id = o.id AND kind = 'sale') THEN
        INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)
        VALUES (o.id, o.sku_id, o.channel, 'refund', o.currency, -o.amount, p_now);
    END IF;
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
        IF v_before = ANY (p_holding)
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
