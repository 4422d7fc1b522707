-- issue 14 item 3: another kamibot shop as a supplier (fulfillment/suppliers/kamibot.py). SQLite cannot change a
-- CHECK constraint: the table is rebuilt with the same columns (no other table references it)
CREATE TABLE suppliers_v15 (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    protocol TEXT NOT NULL CHECK (protocol IN ('kashangwl', 'acgfaka', 'kamibot')),
    base_url TEXT NOT NULL,
    account TEXT NOT NULL,
    secret_key_id TEXT NOT NULL,
    secret_nonce BLOB NOT NULL,
    secret BLOB NOT NULL,
    notify_url TEXT NOT NULL DEFAULT '',
    product_ids TEXT NOT NULL DEFAULT '',
    connect_timeout_ms INTEGER NOT NULL DEFAULT 3000 CHECK (connect_timeout_ms > 0),
    read_timeout_ms INTEGER NOT NULL DEFAULT 10000 CHECK (read_timeout_ms > 0),
    breaker_failures INTEGER NOT NULL DEFAULT 5 CHECK (breaker_failures >= 1),
    breaker_cool_down_s INTEGER NOT NULL DEFAULT 30 CHECK (breaker_cool_down_s >= 0),
    low_balance INTEGER NOT NULL DEFAULT 0 CHECK (low_balance >= 0),
    currency TEXT NOT NULL DEFAULT 'CNY',
    active INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
INSERT INTO suppliers_v15 SELECT * FROM suppliers;
DROP TABLE suppliers;
ALTER TABLE suppliers_v15 RENAME TO suppliers;
