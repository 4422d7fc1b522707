-- Batched API orders (issue 15, "Benchmark"): concurrent POST /orders of one process are coalesced into one call of
-- kb_api_order_batch over arrays — one statement, one transaction, one commit for the whole batch, as payments are
-- (0017 kb_receive_batch). Every API order updates two rows all orders of one SKU and client share (its pool's
-- counter and the client's wallet); one transaction per order held them from its update to its commit, so the
-- orders of all processes queued on them one commit at a time. Here each order is placed by kb_api_order_held
-- (kb_api_order without those two updates; it checks the wallet and the pool against what the batch's earlier
-- orders take) in its own subtransaction: one that raises is rolled back alone and reported by its SQLSTATE and
-- message (the caller places it again alone through kb_api_order, its error mapped as ever), its batch-mates go on.
-- At the end the batch takes each pool's and each wallet's total in one conditional update (ids in order, so
-- concurrent batches cannot deadlock on them) and writes the wallet ledger lines with their balances: the rows are
-- locked only from there to the commit, and a batch whose totals no longer fit fails whole (its caller then places
-- every order alone). Callers keep batches small (≤ 32) so the subtransactions stay inside the subxid cache (64).
CREATE FUNCTION kb_api_order_held(p_client BIGINT, p_order_no TEXT, p_hash TEXT, p_callback TEXT, p_ref TEXT,
                                  p_sku BIGINT, p_qty BIGINT, p_amount BIGINT, p_currency TEXT, p_lang TEXT,
                                  p_expires TIMESTAMPTZ, p_now TIMESTAMPTZ, p_closed TEXT[], p_payable TEXT[],
                                  p_nonce_scope TEXT, p_nonce_key TEXT, p_nonce_expires TIMESTAMPTZ, p_target TEXT,
                                  p_spent BIGINT, p_pool_spent BIGINT[], p_pool_ids BIGINT[],
                                  OUT order_id BIGINT, OUT fresh BOOLEAN, OUT pool_id BIGINT, OUT need BIGINT)
LANGUAGE plpgsql AS $$
DECLARE
    v_hash TEXT; v_pool BIGINT; v_units BIGINT; v_limit BIGINT; v_bought BIGINT;
    v_user TEXT := 'client:' || p_client; o orders; r RECORD; v_backorder BOOLEAN;
BEGIN
    IF p_nonce_key IS NOT NULL THEN
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
        need := 0;
        RETURN;
    END IF;
    -- the wallet after the batch's earlier orders (the batch's debit at the end decides under the row lock)
    IF NOT EXISTS (SELECT 1 FROM api_wallets WHERE client_id = p_client AND currency = p_currency
                    AND balance >= p_spent + p_amount) THEN
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
    v_backorder := EXISTS (SELECT 1 FROM skus s WHERE s.id = p_sku AND s.target_rule IS NOT NULL)
                   OR EXISTS (SELECT 1 FROM sku_sourcing g WHERE g.sku_id = p_sku AND g.on_demand
                                 AND g.sources <> '');
    need := CASE WHEN v_backorder THEN 0 ELSE p_qty * v_units END;
    pool_id := v_pool;
    -- the pool after the batch's earlier orders (the batch's take at the end decides under the row lock)
    IF need > 0 AND NOT EXISTS (SELECT 1 FROM pools WHERE id = v_pool AND available >= need
                                   + COALESCE(p_pool_spent[array_position(p_pool_ids, v_pool)], 0)) THEN
        RAISE EXCEPTION 'pool % cannot hold % uses', v_pool, need USING ERRCODE = 'KB003';
    END IF;
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
    INSERT INTO api_orders (client_id, client_order_no, order_id, request_hash, callback_url, created_at)
    VALUES (p_client, p_order_no, o.id, p_hash, p_callback, p_now);
    order_id := o.id;
    fresh := TRUE;
END $$;

CREATE FUNCTION kb_api_order_batch(p_client BIGINT[], p_order_no TEXT[], p_hash TEXT[], p_callback TEXT[],
                                   p_ref TEXT[], p_sku BIGINT[], p_qty BIGINT[], p_amount BIGINT[], p_currency TEXT[],
                                   p_lang TEXT[], p_expires TIMESTAMPTZ[], p_now TIMESTAMPTZ[], p_closed TEXT[],
                                   p_payable TEXT[], p_nonce_scope TEXT[], p_nonce_key TEXT[],
                                   p_nonce_expires TIMESTAMPTZ[], p_target TEXT[])
RETURNS TABLE (b_index INT, b_error TEXT, b_detail TEXT, out_fresh BOOLEAN, out_o orders, out_i order_items,
               out_c codes)
LANGUAGE plpgsql AS $$
DECLARE
    r RECORD; rr RECORD; k INT; v_balance BIGINT;
    -- what the batch's placed orders take: per pool, per wallet (client, currency), and each order's debit
    v_pool_ids BIGINT[] := '{}'; v_pool_spent BIGINT[] := '{}';
    v_w_client BIGINT[] := '{}'; v_w_ccy TEXT[] := '{}'; v_w_spent BIGINT[] := '{}';
    v_l_wallet INT[] := '{}'; v_l_amount BIGINT[] := '{}'; v_l_order BIGINT[] := '{}'; v_l_note TEXT[] := '{}';
    v_l_at TIMESTAMPTZ[] := '{}';
BEGIN
    FOR i IN 1 .. COALESCE(array_length(p_order_no, 1), 0) LOOP
        b_index := i; b_error := NULL; b_detail := NULL;
        k := NULL;
        FOR j IN 1 .. COALESCE(array_length(v_w_client, 1), 0) LOOP
            IF v_w_client[j] = p_client[i] AND v_w_ccy[j] = p_currency[i] THEN
                k := j;
            END IF;
        END LOOP;
        BEGIN
            SELECT * INTO r FROM kb_api_order_held(
                p_client[i], p_order_no[i], p_hash[i], p_callback[i], p_ref[i], p_sku[i], p_qty[i], p_amount[i],
                p_currency[i], p_lang[i], p_expires[i], p_now[i], p_closed, p_payable, p_nonce_scope[i],
                p_nonce_key[i], p_nonce_expires[i], p_target[i], COALESCE(v_w_spent[k], 0), v_pool_spent,
                v_pool_ids);
        EXCEPTION WHEN OTHERS THEN
            b_error := SQLSTATE; b_detail := SQLERRM;
        END;
        IF b_error IS NOT NULL THEN
            out_fresh := NULL; out_o := NULL; out_i := NULL; out_c := NULL;
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF r.fresh THEN
            IF k IS NULL THEN
                v_w_client := v_w_client || p_client[i]; v_w_ccy := v_w_ccy || p_currency[i];
                v_w_spent := v_w_spent || 0::BIGINT; k := array_length(v_w_client, 1);
            END IF;
            v_w_spent[k] := v_w_spent[k] + p_amount[i];
            v_l_wallet := v_l_wallet || k; v_l_amount := v_l_amount || p_amount[i];
            v_l_order := v_l_order || r.order_id; v_l_note := v_l_note || p_order_no[i];
            v_l_at := v_l_at || p_now[i];
            IF r.need > 0 THEN
                IF array_position(v_pool_ids, r.pool_id) IS NULL THEN
                    v_pool_ids := v_pool_ids || r.pool_id; v_pool_spent := v_pool_spent || 0::BIGINT;
                END IF;
                v_pool_spent[array_position(v_pool_ids, r.pool_id)] :=
                    v_pool_spent[array_position(v_pool_ids, r.pool_id)] + r.need;
            END IF;
        END IF;
        out_fresh := r.fresh;
        FOR rr IN SELECT ord, it, cd FROM orders ord
                    LEFT JOIN order_items it ON it.order_id = ord.id AND NOT it.released
                    LEFT JOIN codes cd ON cd.id = it.code_id
                   WHERE ord.id = r.order_id ORDER BY it.item_no LOOP
            out_o := rr.ord; out_i := rr.it; out_c := rr.cd;
            RETURN NEXT;
        END LOOP;
    END LOOP;
    -- the shared rows, each once, in id order; a total that no longer fits fails the whole batch
    FOR r IN SELECT t.id, t.spent FROM unnest(v_pool_ids, v_pool_spent) AS t(id, spent) ORDER BY t.id LOOP
        UPDATE pools SET available = available - r.spent WHERE id = r.id AND available >= r.spent;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'pool % cannot hold % uses', r.id, r.spent USING ERRCODE = 'KB003';
        END IF;
    END LOOP;
    FOR r IN SELECT t.n, t.client, t.ccy, t.spent FROM unnest(v_w_client, v_w_ccy, v_w_spent)
                 WITH ORDINALITY AS t(client, ccy, spent, n) ORDER BY t.client, t.ccy LOOP
        UPDATE api_wallets SET balance = balance - r.spent
         WHERE client_id = r.client AND currency = r.ccy AND balance >= r.spent
        RETURNING balance INTO v_balance;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'client % wallet cannot pay %', r.client, r.spent USING ERRCODE = 'KB004';
        END IF;
        -- each order's line with the balance right after it, in the batch's order
        INSERT INTO api_wallet_ledger (client_id, currency, amount, balance_after, kind, order_id, note, at)
        SELECT r.client, r.ccy, -l.amount, v_balance + r.spent - SUM(l.amount) OVER (ORDER BY l.n), 'order',
               l.order_id, l.note, l.at
          FROM unnest(v_l_wallet, v_l_amount, v_l_order, v_l_note, v_l_at)
               WITH ORDINALITY AS l(wallet, amount, order_id, note, at, n)
         WHERE l.wallet = r.n ORDER BY l.n;
    END LOOP;
END $$;
