-- An outbox row claimed again after its previous claim lapsed (the claimer died or overran its lease while
-- sending) is reported as interrupted: the customer may already have the message. SQLite reads locked_until in
-- storage/sqlite_orders.py claim_outbox; only the PostgreSQL function changes. The number is kept in step.
SELECT 1;
