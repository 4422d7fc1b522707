-- Batched payments (issue 17, "Allocation on today's hardware"): concurrent receive_payment calls of one process
-- are coalesced into one call of kb_receive_batch over arrays — one statement, one transaction, one round trip for
-- the whole batch, the way SQLite's group commit batches them.
-- Each event is still applied by kb_receive (idempotent by provider transaction id, the same outcomes, ledger
-- lines, order events and outbox rows), inside its own subtransaction: an event that raises is rolled back alone
-- and reported by its SQLSTATE and message (the caller retries it on its own), its batch-mates commit.
-- Callers keep batches small (≤ 32) so the subtransactions stay inside the per-backend subxid cache (64).
CREATE FUNCTION kb_receive_batch(p_provider TEXT[], p_txn TEXT[], p_ref TEXT[], p_amount BIGINT[], p_currency TEXT[],
                                 p_fee BIGINT[], p_payer TEXT[], p_received TIMESTAMPTZ[], p_now TIMESTAMPTZ[],
                                 p_payable TEXT[])
RETURNS TABLE (b_index INT, b_event BIGINT, b_outcome TEXT, b_order BIGINT, b_detail TEXT, b_error TEXT)
LANGUAGE plpgsql AS $$
DECLARE
    r RECORD;
BEGIN
    FOR i IN 1 .. COALESCE(array_length(p_txn, 1), 0) LOOP
        b_index := i; b_event := NULL; b_outcome := NULL; b_order := NULL; b_detail := NULL; b_error := NULL;
        BEGIN
            SELECT * INTO r FROM kb_receive(p_provider[i], p_txn[i], p_ref[i], p_amount[i], p_currency[i], p_fee[i],
                                            p_payer[i], p_received[i], p_now[i], p_payable);
            b_event := r.event_id; b_outcome := r.outcome; b_order := r.order_id; b_detail := r.detail;
        EXCEPTION WHEN OTHERS THEN
            b_error := SQLSTATE; b_detail := SQLERRM;
        END;
        RETURN NEXT;
    END LOOP;
END $$;
