-- Batched API orders (issue 15, "Benchmark"): concurrent POST /orders of one process are coalesced into one call of
-- kb_api_order_batch over arrays — one statement, one transaction, one commit for the whole batch, as payments are
-- (0017 kb_receive_batch). Every API order updates the same two rows (its pool's counter and the client's wallet),
-- so one order per transaction held them from its update until its own commit: the orders of all processes queued
-- on those rows one commit at a time. Each order is still placed by kb_api_order_rows (nonce claim, order number,
-- reservation, wallet debit and allocation, the order read back with its codes) inside its own subtransaction: one
-- that raises is rolled back alone and reported by its SQLSTATE and message (the caller retries it on its own), its
-- batch-mates commit. Callers keep batches small (≤ 32) so the subtransactions stay inside the subxid cache (64).
CREATE FUNCTION kb_api_order_batch(p_client BIGINT[], p_order_no TEXT[], p_hash TEXT[], p_callback TEXT[],
                                   p_ref TEXT[], p_sku BIGINT[], p_qty BIGINT[], p_amount BIGINT[], p_currency TEXT[],
                                   p_lang TEXT[], p_expires TIMESTAMPTZ[], p_now TIMESTAMPTZ[], p_closed TEXT[],
                                   p_payable TEXT[], p_nonce_scope TEXT[], p_nonce_key TEXT[],
                                   p_nonce_expires TIMESTAMPTZ[], p_target TEXT[])
RETURNS TABLE (b_index INT, b_error TEXT, b_detail TEXT, out_fresh BOOLEAN, out_o orders, out_i order_items,
               out_c codes)
LANGUAGE plpgsql AS $$
DECLARE
    r RECORD; v_fresh BOOLEAN; v_o orders; v_items order_items[]; v_codes codes[];
BEGIN
    FOR i IN 1 .. COALESCE(array_length(p_order_no, 1), 0) LOOP
        b_index := i; b_error := NULL; b_detail := NULL;
        v_items := '{}'; v_codes := '{}';
        BEGIN
            -- the rows are kept until the subtransaction is done: one that fails returns none of them
            FOR r IN SELECT * FROM kb_api_order_rows(p_client[i], p_order_no[i], p_hash[i], p_callback[i], p_ref[i],
                                                     p_sku[i], p_qty[i], p_amount[i], p_currency[i], p_lang[i],
                                                     p_expires[i], p_now[i], p_closed, p_payable, p_nonce_scope[i],
                                                     p_nonce_key[i], p_nonce_expires[i], p_target[i]) LOOP
                v_fresh := r.out_fresh; v_o := r.out_o;
                v_items := array_append(v_items, r.out_i); v_codes := array_append(v_codes, r.out_c);
            END LOOP;
        EXCEPTION WHEN OTHERS THEN
            b_error := SQLSTATE; b_detail := SQLERRM;
        END;
        IF b_error IS NOT NULL THEN
            out_fresh := NULL; out_o := NULL; out_i := NULL; out_c := NULL;
            RETURN NEXT;
            CONTINUE;
        END IF;
        out_fresh := v_fresh; out_o := v_o;
        FOR j IN 1 .. array_length(v_items, 1) LOOP
            out_i := v_items[j]; out_c := v_codes[j];
            RETURN NEXT;
        END LOOP;
    END LOOP;
END $$;
