-- Direct recharge SKUs (issue 14): a SKU's target rule (NULL: codes; 'mobile'; 're:PATTERN') and an order's
-- checked target (a mobile number or an account id), written with the reservation.
ALTER TABLE skus ADD COLUMN target_rule TEXT;
ALTER TABLE orders ADD COLUMN target TEXT;

DROP FUNCTION kb_reserve(TEXT, TEXT, TEXT, TEXT, BIGINT, BIGINT, BIGINT, TEXT, TIMESTAMPTZ, TEXT, TIMESTAMPTZ, TEXT[]);

CREATE FUNCTION kb_reserve(p_ref TEXT, p_channel TEXT, p_user TEXT, p_chat TEXT, p_sku BIGINT, p_qty BIGINT,
                           p_amount BIGINT, p_currency TEXT, p_expires TIMESTAMPTZ, p_lang TEXT, p_now TIMESTAMPTZ,
                           p_closed TEXT[], p_target TEXT)
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
                        language, created_at, expires_at, updated_at, target)
    VALUES (p_ref, p_channel, p_user, p_chat, p_sku, v_pool, p_qty, v_units, p_amount, p_currency, 'reserved',
            p_lang, p_now, p_expires, p_now, p_target)
    RETURNING * INTO o;
    INSERT INTO order_events (order_id, from_state, to_state, type, params, at)
    VALUES (o.id, NULL, 'created', 'checkout', '{}', p_now), (o.id, 'created', 'reserved', 'stock_held', '{}', p_now);
    RETURN o;
END $$;
