-- Batched API orders (issue 15): the PostgreSQL side adds kb_api_order_batch; SQLite already commits concurrent
-- API orders together (group commit, storage/sqlite_api_bulk.py). Nothing changes here: the number is kept in step.
SELECT 1;
