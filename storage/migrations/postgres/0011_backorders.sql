-- Procurement after payment (issue 14), as sqlite/0011_backorders.sql: an order of an on-demand or recharge SKU may
-- be reserved without stock (`backorder`: it holds no uses of its pool). A paid one that own stock cannot serve
-- moves to delivering with a `procure` outbox row in the payment's transaction (kb_apply_event); a supplier's
-- delivery is allocated to it by kb_fill_backorder inside the procurement's settlement; kb_fail_backorder fails it
-- with its refund queued, never while a supplier order of it is open or unknown. Every hand-back of held uses
-- (kb_transition, kb_expire, kb_refund) skips backorders.
ALTER TABLE orders ADD COLUMN backorder BOOLEAN NOT NULL DEFAULT FALSE;

CREATE OR REPLACE FUNCTION kb_reserve(p_ref TEXT, p_channel TEXT, p_user TEXT, p_chat TEXT, p_sku BIGINT, p_qty BIGINT,
                           p_amount BIGINT, p_currency TEXT, p_expires TIMESTAMPTZ, p_lang TEXT, p_now TIMESTAMPTZ,
                           p_closed TEXT[], p_target TEXT)
RETURNS orders LANGUAGE plpgsql AS $$
DECLARE
    v_pool BIGINT; v_units BIGINT; v_limit BIGINT; v_bought BIGINT; v_need BIGINT; o orders;
    v_recharge BOOLEAN; v_on_demand BOOLEAN; v_backorder BOOLEAN := FALSE;
BEGIN
    SELECT s.pool_id, s.units, s.per_user_limit, s.target_rule IS NOT NULL,
           EXISTS (SELECT 1 FROM sku_sourcing g WHERE g.sku_id = s.id AND g.on_demand AND g.sources <> '')
      INTO v_pool, v_units, v_limit, v_recharge, v_on_demand
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
    -- a recharge holds nothing (no codes); an on-demand SKU holds own stock when there is, else it is a backorder
    IF v_recharge THEN
        v_backorder := TRUE;
    ELSE
        UPDATE pools SET available = available - v_need WHERE id = v_pool AND available >= v_need;
        IF NOT FOUND THEN
            IF NOT v_on_demand THEN
                RAISE EXCEPTION 'pool % cannot hold % uses', v_pool, v_need USING ERRCODE = 'KB003';
            END IF;
            v_backorder := TRUE;
        END IF;
    END IF;
    INSERT INTO orders (ref, channel, user_id, chat_id, sku_id, pool_id, quantity, units, amount, currency, state,
                        language, created_at, expires_at, updated_at, target, backorder)
    VALUES (p_ref, p_channel, p_user, p_chat, p_sku, v_pool, p_qty, v_units, p_amount, p_currency, 'reserved',
            p_lang, p_now, p_expires, p_now, p_target, v_backorder)
    RETURNING * INTO o;
    INSERT INTO order_events (order_id, from_state, to_state, type, params, at)
    VALUES (o.id, NULL, 'created', 'checkout', '{}', p_now), (o.id, 'created', 'reserved', 'stock_held', '{}', p_now);
    RETURN o;
END $$;

CREATE OR REPLACE FUNCTION kb_transition(p_order BIGINT, p_allowed TEXT[], p_to TEXT, p_type TEXT, p_params JSONB,
                              p_now TIMESTAMPTZ, p_holding TEXT[])
RETURNS BOOLEAN LANGUAGE plpgsql AS $$
DECLARE
    v_state TEXT; v_pool BIGINT; v_uses BIGINT;
BEGIN
    SELECT state, pool_id, CASE WHEN backorder THEN 0 ELSE quantity * units END INTO v_state, v_pool, v_uses FROM orders WHERE id = p_order FOR UPDATE;
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

CREATE OR REPLACE FUNCTION kb_expire(p_now TIMESTAMPTZ, p_limit BIGINT, p_holding TEXT[]) RETURNS SETOF BIGINT LANGUAGE plpgsql AS $$
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
    FOR r IN SELECT pool_id, SUM(CASE WHEN backorder THEN 0 ELSE quantity * units END) AS uses FROM orders WHERE id = ANY (v_ids)
              GROUP BY pool_id ORDER BY pool_id LOOP
        UPDATE pools SET available = available + r.uses WHERE id = r.pool_id;
    END LOOP;
    UPDATE orders SET state = 'expired', updated_at = p_now WHERE id = ANY (v_ids);
    INSERT INTO order_events (order_id, from_state, to_state, type, params, at)
    SELECT t.id, t.state, 'expired', 'reservation_expired', '{}', p_now
      FROM unnest(v_ids, v_states) WITH ORDINALITY AS t(id, state, n) ORDER BY t.n;
    RETURN QUERY SELECT t.id FROM unnest(v_ids) WITH ORDINALITY AS t(id, n) ORDER BY t.n;
END $$;

CREATE OR REPLACE FUNCTION kb_refund(p_order BIGINT, p_type TEXT, p_params JSONB, p_now TIMESTAMPTZ, p_refundable TEXT[],
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

CREATE OR REPLACE FUNCTION kb_apply_event(ev payment_events, p_now TIMESTAMPTZ, p_payable TEXT[],
                               OUT event_id BIGINT, OUT outcome TEXT, OUT order_id BIGINT, OUT detail TEXT)
LANGUAGE plpgsql AS $$
DECLARE
    o orders; v_need BIGINT; v_taken BIGINT := 0; v_paid JSONB; v_ok BOOLEAN := TRUE; v_spins INT := 0;
    v_code BIGINT; v_first BIGINT; v_k BIGINT; v_cost BIGINT; v_ccy TEXT; v_n BIGINT;
    v_codes BIGINT[] := '{}'; v_use_nos BIGINT[] := '{}'; v_costs BIGINT[] := '{}'; v_ccys TEXT[] := '{}';
    v_sourced INT; v_held BOOLEAN;
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
    -- 0: own stock only; 1: on demand (own stock first, then a supplier); 2: a direct recharge (a supplier)
    SELECT CASE WHEN s.target_rule IS NOT NULL THEN 2
                WHEN EXISTS (SELECT 1 FROM sku_sourcing g WHERE g.sku_id = s.id AND g.on_demand
                              AND g.sources <> '') THEN 1 ELSE 0 END
      INTO v_sourced FROM skus s WHERE s.id = o.sku_id;
    v_held := o.state <> 'expired' AND NOT o.backorder;
    IF v_sourced = 2 THEN
        v_ok := FALSE;
    ELSIF NOT v_held THEN
        -- a late payment's reservation was handed back and a backorder held nothing: take the uses now, if any
        UPDATE pools SET available = available - v_need WHERE id = o.pool_id AND available >= v_need;
        v_ok := FOUND;
        v_held := FOUND;
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
    IF v_taken < v_need AND v_sourced > 0 THEN
        -- paid, own stock cannot serve an on-demand or recharge order: hand back what was taken or held, move it
        -- to delivering as a backorder and queue its procurement (the `procure` outbox row), in this transaction
        UPDATE codes SET uses_left = codes.uses_left + t.n
          FROM (SELECT u.code_id, COUNT(*) AS n FROM unnest(v_codes) AS u(code_id) GROUP BY u.code_id) t
         WHERE codes.id = t.code_id;
        IF v_held THEN
            UPDATE pools SET available = available + v_need WHERE id = o.pool_id;
        END IF;
        INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)
        SELECT o.id, o.sku_id, o.channel, x.kind, ev.currency, x.amount, p_now
          FROM (VALUES (1, 'sale', ev.amount), (2, 'fee', -ev.fee)) AS x(n, kind, amount)
         WHERE x.n = 1 OR ev.fee <> 0 ORDER BY x.n;
        UPDATE orders SET state = 'delivering', backorder = TRUE, updated_at = p_now WHERE id = o.id;
        INSERT INTO order_events (order_id, from_state, to_state, type, params, at)
        VALUES (o.id, o.state, 'paid', 'payment_received', v_paid, p_now),
               (o.id, 'paid', 'delivering', 'supplier_ordered', '{}', p_now);
        INSERT INTO outbox (order_id, kind, channel, chat_id, payload, next_attempt_at, created_at)
        VALUES (o.id, 'procure', o.channel, o.chat_id, '', p_now, p_now);
        outcome := 'allocated'; detail := 'procuring';
        UPDATE payment_events SET applied_at = p_now, outcome = 'allocated', order_id = o.id, detail = 'procuring'
         WHERE id = ev.id;
        RETURN;
    END IF;
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

DROP FUNCTION kb_api_order(BIGINT, TEXT, TEXT, TEXT, TEXT, BIGINT, BIGINT, BIGINT, TEXT, TEXT, TIMESTAMPTZ,
                          TIMESTAMPTZ, TEXT[], TEXT[], TEXT, TEXT, TIMESTAMPTZ);

-- kb_api_order of 0009 with the recharge target (p_target, checked by the caller) and backorders
CREATE FUNCTION kb_api_order(p_client BIGINT, p_order_no TEXT, p_hash TEXT, p_callback TEXT, p_ref TEXT,
                             p_sku BIGINT, p_qty BIGINT, p_amount BIGINT, p_currency TEXT, p_lang TEXT,
                             p_expires TIMESTAMPTZ, p_now TIMESTAMPTZ, p_closed TEXT[], p_payable TEXT[],
                             p_nonce_scope TEXT, p_nonce_key TEXT, p_nonce_expires TIMESTAMPTZ, p_target TEXT,
                             OUT order_id BIGINT, OUT fresh BOOLEAN)
LANGUAGE plpgsql AS $$
DECLARE
    v_hash TEXT; v_balance BIGINT; v_pool BIGINT; v_units BIGINT; v_limit BIGINT; v_bought BIGINT;
    v_user TEXT := 'client:' || p_client; o orders; r RECORD; v_backorder BOOLEAN;
BEGIN
    IF p_nonce_key IS NOT NULL THEN
        -- as PgSharedState.claim_once; undone with the order if the order is refused
        INSERT INTO once_keys (scope, key, expires_at) VALUES (p_nonce_scope, p_nonce_key, p_nonce_expires)
        ON CONFLICT (scope, key) DO UPDATE SET expires_at = excluded.expires_at WHERE once_keys.expires_at <= p_now;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'nonce claimed before' USING ERRCODE = 'KB006';
        END IF;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('kb.api_order'), hashtext(p_client || ':' || p_order_no));
    SELECT a.order_id, a.request_hash INTO order_id, v_hash FROM api_orders a
     WHERE a.client_id = p_client AND a.client_order_no = p_order_no;
    IF FOUND THEN
        IF v_hash <> p_hash THEN
            RAISE EXCEPTION 'client % order number taken by another request', p_client USING ERRCODE = 'KB005';
        END IF;
        fresh := FALSE;
        RETURN;
    END IF;
    -- a wallet that cannot pay is refused before any work (the debit below decides under the row lock)
    IF NOT EXISTS (SELECT 1 FROM api_wallets WHERE client_id = p_client AND currency = p_currency
                    AND balance >= p_amount) THEN
        RAISE EXCEPTION 'client % wallet cannot pay %', p_client, p_amount USING ERRCODE = 'KB004';
    END IF;
    SELECT s.pool_id, s.units, s.per_user_limit INTO v_pool, v_units, v_limit
      FROM skus s JOIN products p ON p.id = s.product_id WHERE s.id = p_sku AND s.active AND p.active;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'sku % unknown or inactive', p_sku USING ERRCODE = 'KB001';
    END IF;
    IF v_limit > 0 THEN
        PERFORM pg_advisory_xact_lock(hashtext('api' || ':' || v_user || ':' || p_sku));
        SELECT COALESCE(SUM(quantity), 0) INTO v_bought FROM orders
         WHERE user_id = v_user AND channel = 'api' AND sku_id = p_sku AND NOT (state = ANY (p_closed));
        IF v_bought + p_qty > v_limit THEN
            RAISE EXCEPTION 'sku % per-user limit %', p_sku, v_limit USING ERRCODE = 'KB002';
        END IF;
    END IF;
    -- an on-demand or recharge SKU's order is a backorder: kb_apply_event takes its uses itself (own stock), or
    -- moves it to delivering with its procurement queued
    v_backorder := EXISTS (SELECT 1 FROM skus s WHERE s.id = p_sku AND s.target_rule IS NOT NULL)
                   OR EXISTS (SELECT 1 FROM sku_sourcing g WHERE g.sku_id = p_sku AND g.on_demand
                                 AND g.sources <> '');
    INSERT INTO orders (ref, channel, user_id, chat_id, sku_id, pool_id, quantity, units, amount, currency, state,
                        language, created_at, expires_at, updated_at, target, backorder)
    VALUES (p_ref, 'api', v_user, p_client::TEXT, p_sku, v_pool, p_qty, v_units, p_amount, p_currency, 'reserved',
            p_lang, p_now, p_expires, p_now, p_target, v_backorder)
    RETURNING * INTO o;
    INSERT INTO order_events (order_id, from_state, to_state, type, params, at)
    VALUES (o.id, NULL, 'created', 'checkout', '{}', p_now), (o.id, 'created', 'reserved', 'stock_held', '{}', p_now);
    SELECT * INTO r FROM kb_receive('wallet', p_client || ':' || p_order_no, p_ref, p_amount, p_currency, 0, '',
                                    p_now, p_now, p_payable);
    IF r.outcome <> 'allocated' THEN
        RAISE EXCEPTION 'order % not allocated: %', o.id, r.outcome USING ERRCODE = 'KB003';
    END IF;
    IF NOT v_backorder THEN
        UPDATE pools SET available = available - p_qty * v_units WHERE id = v_pool AND available >= p_qty * v_units;
    END IF;
    IF NOT v_backorder AND NOT FOUND THEN
        RAISE EXCEPTION 'pool % cannot hold % uses', v_pool, p_qty * v_units USING ERRCODE = 'KB003';
    END IF;
    UPDATE api_wallets SET balance = balance - p_amount
     WHERE client_id = p_client AND currency = p_currency AND balance >= p_amount
    RETURNING balance INTO v_balance;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'client % wallet cannot pay %', p_client, p_amount USING ERRCODE = 'KB004';
    END IF;
    INSERT INTO api_wallet_ledger (client_id, currency, amount, balance_after, kind, order_id, note, at)
    VALUES (p_client, p_currency, -p_amount, v_balance, 'order', o.id, p_order_no, p_now);
    INSERT INTO api_orders (client_id, client_order_no, order_id, request_hash, callback_url, created_at)
    VALUES (p_client, p_order_no, o.id, p_hash, p_callback, p_now);
    order_id := o.id;
    fresh := TRUE;
END $$;

-- the order if it is a paid backorder still waiting on its supplier (delivering, no items, no delivery row), locked
CREATE FUNCTION kb_waiting_order(p_order BIGINT) RETURNS orders LANGUAGE plpgsql AS $$
DECLARE
    o orders;
BEGIN
    SELECT * INTO o FROM orders WHERE id = p_order FOR UPDATE;
    IF NOT FOUND OR o.state <> 'delivering' OR NOT o.backorder
       OR EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = p_order)
       OR EXISTS (SELECT 1 FROM outbox x WHERE x.order_id = p_order AND x.kind = 'deliver') THEN
        RETURN NULL;
    END IF;
    RETURN o;
END $$;

-- no source can serve a waiting order: failed, its refund queued; refused while a supplier order of it is open or
-- unknown (and, unless p_allow_succeeded, succeeded) - as sqlite_orders.fail_backorder
CREATE FUNCTION kb_fail_backorder(p_order BIGINT, p_cause TEXT, p_now TIMESTAMPTZ, p_allow_succeeded BOOLEAN)
RETURNS BOOLEAN LANGUAGE plpgsql AS $$
DECLARE
    o orders; ev payment_events; v_recharge BOOLEAN;
BEGIN
    o := kb_waiting_order(p_order);
    IF o.id IS NULL OR EXISTS (SELECT 1 FROM procurements p WHERE p.order_id = p_order
                                  AND (p.state IN ('planned', 'sent', 'unknown')
                                       OR (p.state = 'succeeded' AND NOT p_allow_succeeded))) THEN
        RETURN FALSE;
    END IF;
    SELECT * INTO ev FROM payment_events e WHERE e.order_id = p_order AND e.outcome = 'allocated' ORDER BY e.id LIMIT 1;
    IF NOT FOUND THEN
        RETURN FALSE;
    END IF;
    SELECT s.target_rule IS NOT NULL INTO v_recharge FROM skus s WHERE s.id = o.sku_id;
    UPDATE orders SET state = 'failed', updated_at = p_now WHERE id = p_order;
    INSERT INTO order_events (order_id, from_state, to_state, type, params, at)
    VALUES (p_order, 'delivering', 'failed', 'supplier_failed', jsonb_build_object('cause', left(p_cause, 200)), p_now);
    INSERT INTO outbox (order_id, kind, channel, chat_id, payload, next_attempt_at, created_at)
    VALUES (p_order, 'refund', o.channel, o.chat_id,
            jsonb_build_object('provider', ev.provider, 'txn', ev.provider_txn_id, 'amount', ev.amount,
                               'cause', left(p_cause, 100),
                               'notice', CASE WHEN v_recharge THEN 'supply.recharge_refunded'
                                              ELSE 'supply.procure_refunded' END)::TEXT, p_now, p_now)
    ON CONFLICT (order_id, kind) WHERE kind IN ('deliver', 'refund') DO NOTHING;
    RETURN TRUE;
END $$;

-- a supplier delivered for a waiting order (inside the settlement that put its codes, batch p_batch, into the pool):
-- allocate them to it with items, the cost ledger line and the deliver outbox row (a recharge: no codes, the procurement's cost);
-- a pool that still cannot serve it fails it with its refund - as sqlite_orders.fill_backorder
CREATE FUNCTION kb_fill_backorder(p_order BIGINT, p_batch BIGINT, p_cost BIGINT, p_ccy TEXT, p_ref TEXT,
                                  p_now TIMESTAMPTZ)
RETURNS BOOLEAN LANGUAGE plpgsql AS $$
DECLARE
    o orders; v_need BIGINT; v_recharge BOOLEAN;
BEGIN
    o := kb_waiting_order(p_order);
    IF o.id IS NULL THEN
        RETURN FALSE;
    END IF;
    v_need := o.quantity * o.units;
    SELECT s.target_rule IS NOT NULL INTO v_recharge FROM skus s WHERE s.id = o.sku_id;
    IF v_recharge THEN
        IF COALESCE(p_cost, 0) <> 0 THEN
            INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)
            VALUES (o.id, o.sku_id, o.channel, 'cost', p_ccy, -p_cost, p_now);
        END IF;
    ELSE
        -- this procurement's own codes (its batch, inserted by this transaction: nobody else can see them)
        IF p_batch IS NULL OR (SELECT COUNT(*) FROM codes WHERE batch_id = p_batch AND uses_left > 0) < v_need THEN
            RETURN kb_fail_backorder(p_order, 'supplier delivered too few codes', p_now, TRUE);
        END IF;
        UPDATE pools SET available = available - v_need WHERE id = o.pool_id;
        WITH c AS (SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS n FROM codes
                    WHERE batch_id = p_batch AND uses_left > 0 ORDER BY id LIMIT v_need),
             u AS (UPDATE codes SET uses_left = codes.uses_left - 1 FROM c WHERE codes.id = c.id
                   RETURNING codes.id, codes.uses_total - codes.uses_left AS use_no, codes.unit_cost,
                             codes.cost_currency, c.n)
        INSERT INTO order_items (order_id, item_no, code_id, use_no, unit_cost, cost_currency)
        SELECT o.id, u.n, u.id, u.use_no, u.unit_cost, u.cost_currency FROM u;
        INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)
        SELECT o.id, o.sku_id, o.channel, 'cost', i.cost_currency, -SUM(i.unit_cost)::BIGINT, p_now
          FROM order_items i WHERE i.order_id = o.id GROUP BY i.cost_currency HAVING SUM(i.unit_cost) <> 0
         ORDER BY i.cost_currency;
    END IF;
    INSERT INTO order_events (order_id, from_state, to_state, type, params, at)
    VALUES (o.id, 'delivering', 'delivering', 'supplier_delivered', jsonb_build_object('ref', p_ref), p_now);
    INSERT INTO outbox (order_id, kind, channel, chat_id, payload, next_attempt_at, created_at)
    VALUES (o.id, 'deliver', o.channel, o.chat_id, '', p_now, p_now);
    RETURN TRUE;
END $$;

-- a supplier order of a waiting order definitively failed: queue it again (fail over, or fail it)
CREATE FUNCTION kb_requeue_procure(p_order BIGINT, p_now TIMESTAMPTZ) RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    o orders;
BEGIN
    o := kb_waiting_order(p_order);
    IF o.id IS NOT NULL THEN
        INSERT INTO outbox (order_id, kind, channel, chat_id, payload, next_attempt_at, created_at)
        VALUES (o.id, 'procure', o.channel, o.chat_id, '', p_now, p_now);
    END IF;
END $$;
