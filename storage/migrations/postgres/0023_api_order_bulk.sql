-- Set-based fast path for API orders (issue 15, "Benchmark"): kb_api_order_bulk places the plain orders of a batch
-- with one statement per table for the whole batch, where kb_api_order_batch (0019) runs some twenty statements per
-- order through kb_api_order_held and kb_receive (about 2 ms of server CPU per order, most of it per-statement
-- executor start-up and plan checks). It is the PostgreSQL twin of storage/sqlite_api_bulk.py.
--
-- Plain means: a fresh client order number (not in api_orders, once in the batch) and a nonce never seen (not in
-- once_keys, once in the batch); an active SKU of an active product with no per-user limit, no recharge target and
-- no on-demand sourcing; a quantity of at least one; the order's wallet and pool can serve it after the batch's
-- earlier plain orders, as read now. The rows written are the ones the one-by-one body writes for such an order:
-- nonce key, order (written as `delivering`, which the one-by-one body reaches in the same transaction), its four
-- events (checkout, stock_held, payment_received {provider, txn}, codes_allocated), the wallet payment event (applied,
-- allocated), its items with their codes' oldest free uses, the sale and cost ledger lines, the deliver outbox row,
-- the client's order number, the pool's counter and the wallet debit with one ledger line per order and the balance
-- right after it. The nonces are claimed first, then the same advisory lock on (client, number) as
-- kb_api_order_held takes (the same order: nonce, then lock), and the numbers are checked again under the locks.
--
-- Every order left out is answered with b_error 'KBSKP' (nothing written for it): the caller places those through
-- kb_api_order_batch. Any doubt found while writing (a code short, a counter or wallet that no longer fits, a nonce
-- or number taken by a concurrent transaction, a use number a concurrent transaction took) raises, which undoes the
-- whole call: the caller then places every order of the batch through kb_api_order_batch, as before this function
-- existed.
CREATE FUNCTION kb_api_order_bulk(p_client BIGINT[], p_order_no TEXT[], p_hash TEXT[], p_callback TEXT[],
                                  p_ref TEXT[], p_sku BIGINT[], p_qty BIGINT[], p_amount BIGINT[], p_currency TEXT[],
                                  p_lang TEXT[], p_expires TIMESTAMPTZ[], p_now TIMESTAMPTZ[], p_closed TEXT[],
                                  p_payable TEXT[], p_nonce_scope TEXT[], p_nonce_key TEXT[],
                                  p_nonce_expires TIMESTAMPTZ[], p_target TEXT[])
RETURNS TABLE (b_index INT, b_error TEXT, b_detail TEXT, out_fresh BOOLEAN, out_o orders, out_i order_items,
               out_c codes)
LANGUAGE plpgsql AS $$
DECLARE
    -- the plain orders, in batch order: input index, order id, pool, uses needed
    v_plain INT[]; v_ids BIGINT[]; v_pools BIGINT[]; v_need BIGINT[];
    v_codes BIGINT[] := '{}'; v_use_nos BIGINT[] := '{}'; v_costs BIGINT[] := '{}'; v_ccys TEXT[] := '{}';
    v_took BIGINT[]; v_totals BIGINT[]; v_counts BIGINT[];
    v_now TIMESTAMPTZ; v_got BIGINT; v_balance BIGINT; r RECORD;
BEGIN
    -- which orders are plain, as read now; the nonce claims and the numbers' locks follow, in the order the one-by-one
    -- body takes them (kb_api_order_held: nonce, then lock), each set sorted, so no path waits for another crosswise
    WITH t AS (
        SELECT x.*, s.pool_id, s.units,
               count(*) OVER (PARTITION BY x.c, x.o) AS same_no,
               count(*) OVER (PARTITION BY x.ns, x.nk) AS same_nonce
          FROM unnest(p_client, p_order_no, p_sku, p_qty, p_amount, p_currency, p_target, p_nonce_scope,
                      p_nonce_key) WITH ORDINALITY AS x(c, o, sku, q, amount, ccy, tgt, ns, nk, i)
          JOIN skus s ON s.id = x.sku AND s.active AND s.per_user_limit = 0 AND s.target_rule IS NULL
          JOIN products p ON p.id = s.product_id AND p.active
         WHERE x.tgt IS NULL AND x.q >= 1
           AND NOT EXISTS (SELECT 1 FROM sku_sourcing g WHERE g.sku_id = s.id AND g.on_demand AND g.sources <> '')
           AND NOT EXISTS (SELECT 1 FROM api_orders a WHERE a.client_id = x.c AND a.client_order_no = x.o)
           AND (x.nk IS NULL OR NOT EXISTS (SELECT 1 FROM once_keys k WHERE k.scope = x.ns AND k.key = x.nk))
    ), fresh AS (
        SELECT t.*, SUM(t.amount) OVER (PARTITION BY t.c, t.ccy ORDER BY t.i) AS wallet_upto,
               SUM(t.q * t.units) OVER (PARTITION BY t.pool_id ORDER BY t.i) AS pool_upto
          FROM t WHERE t.same_no = 1 AND (t.nk IS NULL OR t.same_nonce = 1)
    )
    SELECT array_agg(f.i ORDER BY f.i), array_agg(f.pool_id ORDER BY f.i), array_agg(f.q * f.units ORDER BY f.i)
      INTO v_plain, v_pools, v_need
      FROM fresh f
     WHERE f.wallet_upto <= (SELECT w.balance FROM api_wallets w WHERE w.client_id = f.c AND w.currency = f.ccy)
       AND f.pool_upto <= (SELECT pl.available FROM pools pl WHERE pl.id = f.pool_id);
    IF v_plain IS NULL THEN
        RETURN QUERY SELECT g::INT, 'KBSKP'::TEXT, NULL::TEXT, NULL::BOOLEAN, NULL::orders, NULL::order_items,
                            NULL::codes
                       FROM generate_subscripts(p_order_no, 1) AS g;
        RETURN;
    END IF;
    SELECT max(p_now[u.i]) INTO v_now FROM unnest(v_plain) AS u(i);
    -- a nonce a concurrent transaction claimed meanwhile raises here (the caller goes on to kb_api_order_batch)
    INSERT INTO once_keys (scope, key, expires_at)
    SELECT p_nonce_scope[u.i], p_nonce_key[u.i], p_nonce_expires[u.i] FROM unnest(v_plain) AS u(i)
     WHERE p_nonce_key[u.i] IS NOT NULL
     ORDER BY p_nonce_scope[u.i], p_nonce_key[u.i];
    PERFORM pg_advisory_xact_lock(hashtext('kb.api_order'), t.h)
       FROM (SELECT DISTINCT hashtext(p_client[u.i] || ':' || p_order_no[u.i]) AS h FROM unnest(v_plain) AS u(i)
              ORDER BY 1) t;
    -- under the locks: a number placed by a transaction that committed since the first read undoes the call
    IF EXISTS (SELECT 1 FROM unnest(v_plain) AS u(i) JOIN api_orders a
                 ON a.client_id = p_client[u.i] AND a.client_order_no = p_order_no[u.i]) THEN
        RAISE EXCEPTION 'an order number of the batch was placed meanwhile' USING ERRCODE = 'KB005';
    END IF;
    WITH ins AS (
        INSERT INTO orders (ref, channel, user_id, chat_id, sku_id, pool_id, quantity, units, amount, currency,
                            state, language, created_at, expires_at, updated_at, target, backorder)
        SELECT p_ref[u.i], 'api', 'client:' || p_client[u.i], p_client[u.i]::TEXT, p_sku[u.i], u.pool,
               p_qty[u.i], u.need / p_qty[u.i], p_amount[u.i], p_currency[u.i], 'delivering', p_lang[u.i],
               p_now[u.i], p_expires[u.i], p_now[u.i], NULL, FALSE
          FROM unnest(v_plain, v_pools, v_need) WITH ORDINALITY AS u(i, pool, need, k) ORDER BY u.k
        RETURNING id, ref)
    SELECT array_agg(ins.id ORDER BY u.k) INTO v_ids
      FROM unnest(v_plain) WITH ORDINALITY AS u(i, k) JOIN ins ON ins.ref = p_ref[u.i];
    -- each pool's oldest claimable uses nobody else holds, as many as its plain orders need together; use numbers
    -- the smallest ones no live item of the code holds (a refund can free a middle one)
    FOR r IN SELECT u.pool, SUM(u.need) AS need FROM unnest(v_pools, v_need) AS u(pool, need)
              GROUP BY u.pool ORDER BY u.pool LOOP
        WITH c AS (SELECT id, uses_left FROM codes
                    WHERE pool_id = r.pool AND uses_left > 0 AND status = 'available'
                      AND (expires_at IS NULL OR expires_at > v_now)
                    ORDER BY id LIMIT r.need FOR UPDATE SKIP LOCKED),
             w AS (SELECT c.id, LEAST(c.uses_left, r.need - (SUM(c.uses_left) OVER (ORDER BY c.id) - c.uses_left))
                          AS k FROM c),
             upd AS (UPDATE codes SET uses_left = codes.uses_left - w.k FROM w
                      WHERE codes.id = w.id AND w.k > 0
                     RETURNING codes.id, codes.uses_total, w.k)
        SELECT array_agg(upd.id ORDER BY upd.id), array_agg(upd.uses_total ORDER BY upd.id),
               array_agg(upd.k ORDER BY upd.id), COALESCE(SUM(upd.k), 0)
          INTO v_took, v_totals, v_counts, v_got FROM upd;
        IF v_got < r.need THEN
            RAISE EXCEPTION 'pool % has % free uses of % at hand', r.pool, v_got, r.need USING ERRCODE = 'KB003';
        END IF;
        -- use numbers in a statement of their own: its snapshot sees the items of every transaction that held
        -- these codes before us (the claim above waited for none of them: SKIP LOCKED)
        SELECT v_codes || array_agg(t.id ORDER BY t.id, g.use_no),
               v_use_nos || array_agg(g.use_no ORDER BY t.id, g.use_no),
               v_costs || array_agg(cd.unit_cost ORDER BY t.id, g.use_no),
               v_ccys || array_agg(cd.cost_currency ORDER BY t.id, g.use_no), count(*)
          INTO v_codes, v_use_nos, v_costs, v_ccys, v_got
          FROM unnest(v_took, v_totals, v_counts) AS t(id, total, k)
          JOIN codes cd ON cd.id = t.id,
               LATERAL (SELECT n AS use_no FROM generate_series(1, t.total) AS n
                         WHERE NOT EXISTS (SELECT 1 FROM order_items it
                                            WHERE it.code_id = t.id AND it.use_no = n AND NOT it.released)
                         ORDER BY n LIMIT t.k) g;
        IF v_got < r.need THEN
            RAISE EXCEPTION 'pool % codes short of free use numbers', r.pool USING ERRCODE = 'KB003';
        END IF;
    END LOOP;
    -- the uses in pool order, each pool's handed out to its orders in batch order
    INSERT INTO order_items (order_id, item_no, code_id, use_no, unit_cost, cost_currency)
    SELECT q.id, t.n - q.start, t.code_id, t.use_no, t.cost, t.ccy
      FROM unnest(v_codes, v_use_nos, v_costs, v_ccys) WITH ORDINALITY AS t(code_id, use_no, cost, ccy, n)
      JOIN (SELECT u.id, u.need,
                   SUM(u.need) OVER (ORDER BY u.pool, u.k) - u.need AS start
              FROM unnest(v_ids, v_pools, v_need) WITH ORDINALITY AS u(id, pool, need, k)) q
        ON t.n > q.start AND t.n <= q.start + q.need
     ORDER BY t.n;
    INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)
    SELECT x.id, x.sku, 'api', x.kind, x.ccy, x.amount, x.at FROM (
        SELECT u.k, -1 AS n, u.id, p_sku[u.i] AS sku, 'sale' AS kind, p_currency[u.i] AS ccy,
               p_amount[u.i] AS amount, p_now[u.i] AS at
          FROM unnest(v_plain, v_ids) WITH ORDINALITY AS u(i, id, k)
        UNION ALL
        SELECT u.k, MIN(it.item_no), u.id, p_sku[u.i], 'cost', it.cost_currency, -SUM(it.unit_cost)::BIGINT,
               p_now[u.i]
          FROM unnest(v_plain, v_ids) WITH ORDINALITY AS u(i, id, k)
          JOIN order_items it ON it.order_id = u.id
         GROUP BY u.k, u.id, u.i, it.cost_currency HAVING SUM(it.unit_cost) <> 0) x
     ORDER BY x.k, x.n;
    INSERT INTO order_events (order_id, from_state, to_state, type, params, at)
    SELECT u.id, e.from_state, e.to_state, e.type,
           CASE WHEN e.type = 'payment_received'
                THEN jsonb_build_object('provider', 'wallet', 'txn', p_client[u.i] || ':' || p_order_no[u.i])
                ELSE '{}'::JSONB END, p_now[u.i]
      FROM unnest(v_plain, v_ids) WITH ORDINALITY AS u(i, id, k)
     CROSS JOIN (VALUES (1, NULL, 'created', 'checkout'), (2, 'created', 'reserved', 'stock_held'),
                        (3, 'reserved', 'paid', 'payment_received'),
                        (4, 'paid', 'delivering', 'codes_allocated')) AS e(n, from_state, to_state, type)
     ORDER BY u.k, e.n;
    INSERT INTO payment_events (provider, provider_txn_id, order_ref, amount, currency, fee, payer, received_at,
                                applied_at, outcome, order_id, detail)
    SELECT 'wallet', p_client[u.i] || ':' || p_order_no[u.i], p_ref[u.i], p_amount[u.i], p_currency[u.i], 0, '',
           p_now[u.i], p_now[u.i], 'allocated', u.id, ''
      FROM unnest(v_plain, v_ids) WITH ORDINALITY AS u(i, id, k) ORDER BY u.k;
    INSERT INTO outbox (order_id, kind, channel, chat_id, payload, next_attempt_at, created_at)
    SELECT u.id, 'deliver', 'api', p_client[u.i]::TEXT, '', p_now[u.i], p_now[u.i]
      FROM unnest(v_plain, v_ids) WITH ORDINALITY AS u(i, id, k) ORDER BY u.k;
    INSERT INTO api_orders (client_id, client_order_no, order_id, request_hash, callback_url, created_at)
    SELECT p_client[u.i], p_order_no[u.i], u.id, p_hash[u.i], p_callback[u.i], p_now[u.i]
      FROM unnest(v_plain, v_ids) WITH ORDINALITY AS u(i, id, k) ORDER BY u.k;
    -- the shared rows, each once, in id order (as kb_api_order_batch): a total that no longer fits undoes the call
    FOR r IN SELECT u.pool, SUM(u.need) AS spent FROM unnest(v_pools, v_need) AS u(pool, need)
              GROUP BY u.pool ORDER BY u.pool LOOP
        UPDATE pools SET available = available - r.spent WHERE id = r.pool AND available >= r.spent;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'pool % cannot hold % uses', r.pool, r.spent USING ERRCODE = 'KB003';
        END IF;
    END LOOP;
    FOR r IN SELECT p_client[u.i] AS client, p_currency[u.i] AS ccy, SUM(p_amount[u.i]) AS spent
               FROM unnest(v_plain) AS u(i) GROUP BY 1, 2 ORDER BY 1, 2 LOOP
        UPDATE api_wallets SET balance = balance - r.spent
         WHERE client_id = r.client AND currency = r.ccy AND balance >= r.spent
        RETURNING balance INTO v_balance;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'client % wallet cannot pay %', r.client, r.spent USING ERRCODE = 'KB004';
        END IF;
        INSERT INTO api_wallet_ledger (client_id, currency, amount, balance_after, kind, order_id, note, at)
        SELECT r.client, r.ccy, -p_amount[u.i],
               v_balance + r.spent - SUM(p_amount[u.i]) OVER (ORDER BY u.k), 'order', u.id, p_order_no[u.i],
               p_now[u.i]
          FROM unnest(v_plain, v_ids) WITH ORDINALITY AS u(i, id, k)
         WHERE p_client[u.i] = r.client AND p_currency[u.i] = r.ccy
         ORDER BY u.k;
    END LOOP;
    RETURN QUERY
        SELECT u.i, NULL::TEXT, NULL::TEXT, TRUE, ord, it, cd
          FROM unnest(v_plain, v_ids) WITH ORDINALITY AS u(i, id, k)
          JOIN orders ord ON ord.id = u.id
          LEFT JOIN order_items it ON it.order_id = ord.id AND NOT it.released
          LEFT JOIN codes cd ON cd.id = it.code_id
         ORDER BY u.k, it.item_no;
    RETURN QUERY SELECT g::INT, 'KBSKP'::TEXT, NULL::TEXT, NULL::BOOLEAN, NULL::orders, NULL::order_items,
                        NULL::codes
                   FROM generate_subscripts(p_order_no, 1) AS g WHERE NOT (g = ANY (v_plain));
END $$;

-- Expired claim-once keys (API nonces, one per signed request, kept 10 minutes) are deleted every 1,000 requests:
-- by this index, not a scan of every live key (600,000 at 1,000 requests a second).
CREATE INDEX once_keys_expiry ON once_keys (expires_at);
