-- Batched payments (issue 17): the PostgreSQL side adds kb_receive_batch; SQLite already batches concurrent
-- payments by group commit (storage/sqlite_bulk.py). Nothing changes here: the number is kept in step.
SELECT 1;
