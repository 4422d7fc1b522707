-- issue 15 (API throughput): kb_api_order_rows places the order exactly as kb_api_order (it calls it: nonce claim,
-- order number check, reservation, wallet debit and allocation in one transaction) and answers the committed
-- order's row with its live items and their codes in the same call, so POST /orders costs one round trip, not two.
-- A plpgsql function's later statements see its earlier writes (a new snapshot per statement of a VOLATILE function).
CREATE FUNCTION kb_api_order_rows(p_client BIGINT, p_order_no TEXT, p_hash TEXT, p_callback TEXT, p_ref TEXT,
                                  p_sku BIGINT, p_qty BIGINT, p_amount BIGINT, p_currency TEXT, p_lang TEXT,
                                  p_expires TIMESTAMPTZ, p_now TIMESTAMPTZ, p_closed TEXT[], p_payable TEXT[],
                                  p_nonce_scope TEXT, p_nonce_key TEXT, p_nonce_expires TIMESTAMPTZ, p_target TEXT)
RETURNS TABLE (out_fresh BOOLEAN, out_o orders, out_i order_items, out_c codes)
LANGUAGE plpgsql AS $$
DECLARE
    v_id BIGINT; v_fresh BOOLEAN;
BEGIN
    SELECT a.order_id, a.fresh INTO v_id, v_fresh
      FROM kb_api_order(p_client, p_order_no, p_hash, p_callback, p_ref, p_sku, p_qty, p_amount, p_currency, p_lang,
                        p_expires, p_now, p_closed, p_payable, p_nonce_scope, p_nonce_key, p_nonce_expires,
                        p_target) a;
    RETURN QUERY
        SELECT v_fresh, ord, it, cd
          FROM orders ord
          LEFT JOIN order_items it ON it.order_id = ord.id AND NOT it.released
          LEFT JOIN codes cd ON cd.id = it.code_id
         WHERE ord.id = v_id
         ORDER BY it.item_no;
END $$;
