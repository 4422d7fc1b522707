-- issue 14: suppliers (credentials sealed under the vault key), procurements (exactly once), SKU sources
CREATE TABLE suppliers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    protocol TEXT NOT NULL CHECK (protocol IN ('kashangwl', 'acgfaka')),
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
CREATE TABLE procurements (
    id INTEGER PRIMARY KEY,
    our_ref TEXT NOT NULL UNIQUE,
    supplier TEXT NOT NULL,
    product_id TEXT NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity >= 1),
    max_unit_cost INTEGER NOT NULL CHECK (max_unit_cost >= 0),
    currency TEXT NOT NULL,
    pool_id INTEGER NOT NULL REFERENCES pools(id),
    order_id INTEGER REFERENCES orders(id),
    state TEXT NOT NULL CHECK (state IN ('planned', 'sent', 'succeeded', 'failed', 'unknown')),
    supplier_order_id TEXT,
    cost INTEGER,
    batch_id INTEGER REFERENCES code_batches(id),
    received INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0,
    shortfall INTEGER NOT NULL DEFAULT 0,
    held INTEGER NOT NULL DEFAULT 0,
    detail TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX procurements_open ON procurements (state, updated_at) WHERE state IN ('planned', 'sent', 'unknown');
-- at most one supplier order per order unless the earlier ones definitively failed
CREATE UNIQUE INDEX procurements_order_live ON procurements (order_id) WHERE order_id IS NOT NULL AND state <> 'failed';
-- one open restock per pool
CREATE UNIQUE INDEX procurements_restock_open ON procurements (pool_id)
    WHERE order_id IS NULL AND state IN ('planned', 'sent', 'unknown');
CREATE TABLE sku_sourcing (
    sku_id INTEGER PRIMARY KEY REFERENCES skus(id),
    own INTEGER NOT NULL DEFAULT 1,
    sources TEXT NOT NULL DEFAULT '',
    max_unit_cost INTEGER NOT NULL DEFAULT 0 CHECK (max_unit_cost >= 0),
    restock_quantity INTEGER NOT NULL DEFAULT 0 CHECK (restock_quantity >= 0),
    on_demand INTEGER NOT NULL DEFAULT 0,
    margin_floor INTEGER NOT NULL DEFAULT 0 CHECK (margin_floor >= 0),
    markup_bp INTEGER NOT NULL DEFAULT 0 CHECK (markup_bp >= 0),
    price_unit INTEGER NOT NULL DEFAULT 1 CHECK (price_unit >= 1)
);
CREATE TABLE supplier_products (
    supplier TEXT NOT NULL,
    product_id TEXT NOT NULL,
    name TEXT NOT NULL,
    cost INTEGER NOT NULL CHECK (cost >= 0),
    currency TEXT NOT NULL,
    stock TEXT NOT NULL,
    stock_count INTEGER,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (supplier, product_id)
);
