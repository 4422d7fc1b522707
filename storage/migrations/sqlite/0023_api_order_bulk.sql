-- Set-based API orders (issue 15): the PostgreSQL side adds kb_api_order_bulk, the twin of storage/sqlite_api_bulk.py,
-- which SQLite already has. Nothing changes here: the number is kept in step.
SELECT 1;
