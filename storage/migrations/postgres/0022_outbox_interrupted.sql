-- An outbox row claimed again after its previous claim lapsed (the claimer died or overran its lease while
-- sending: retry/complete/fail all clear locked_until) comes back with o_interrupted: the customer may already
-- have that message, and the channel says this one is the same delivery sent again.
DROP FUNCTION kb_claim_outbox(TIMESTAMPTZ, TIMESTAMPTZ, BIGINT);
CREATE FUNCTION kb_claim_outbox(p_now TIMESTAMPTZ, p_lease TIMESTAMPTZ, p_limit BIGINT)
RETURNS TABLE (o_id BIGINT, o_order_id BIGINT, o_kind TEXT, o_channel TEXT, o_chat_id TEXT, o_attempts BIGINT,
               o_payload TEXT, o_interrupted BOOLEAN)
LANGUAGE sql AS $$
    WITH due AS (
        SELECT id, locked_until AS was_locked FROM outbox
         WHERE status = 'pending' AND next_attempt_at <= p_now
           AND (locked_until IS NULL OR locked_until <= p_now)
         ORDER BY id LIMIT p_limit FOR UPDATE SKIP LOCKED),
    claimed AS (
        UPDATE outbox SET locked_until = p_lease, attempts = attempts + 1
          FROM due WHERE outbox.id = due.id
        RETURNING outbox.id, outbox.order_id, outbox.kind, outbox.channel, outbox.chat_id, outbox.attempts,
                  outbox.payload, due.was_locked IS NOT NULL AS interrupted),
    revealed AS (
        UPDATE order_items SET revealed_at = p_now
         WHERE order_id IN (SELECT c.order_id FROM claimed c WHERE c.kind IN ('deliver', 'resend'))
           AND revealed_at IS NULL)
    SELECT id, order_id, kind, channel, chat_id, attempts, payload, interrupted FROM claimed ORDER BY id;
$$;
