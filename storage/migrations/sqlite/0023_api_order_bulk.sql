-- Set-based API orders (issue 15): the PostgreSQL side adds kb_api_order_bulk, the twin of storage/sqlite_api_bulk.py,
-- which SQLite already has.
-- Expired claim-once keys (API nonces, one per signed request, kept 10 minutes) are deleted every 1,000 requests:
-- by this index, not a scan of every live key (600,000 at 1,000 requests a second).
CREATE INDEX once_keys_expiry ON once_keys (expires_at);
