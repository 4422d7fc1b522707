-- kamibot schema v1 (SQLite). Times are ISO-8601 UTC text, money integer minor units.
CREATE TABLE categories (
    id INTEGER PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name_en TEXT NOT NULL,
    name_zh TEXT NOT NULL,
    sort INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    category_id INTEGER NOT NULL REFERENCES categories(id),
    slug TEXT NOT NULL UNIQUE,
    name_en TEXT NOT NULL,
    name_zh TEXT NOT NULL,
    description_en TEXT NOT NULL DEFAULT '',
    description_zh TEXT NOT NULL DEFAULT '',
    instructions_en TEXT NOT NULL DEFAULT '',
    instructions_zh TEXT NOT NULL DEFAULT '',
    active INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE pools (
    id INTEGER PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    low_stock INTEGER NOT NULL DEFAULT 10,
    available INTEGER NOT NULL DEFAULT 0 CHECK (available >= 0)
);
CREATE TABLE skus (
    id INTEGER PRIMARY KEY,
    product_id INTEGER NOT NULL REFERENCES products(id),
    pool_id INTEGER NOT NULL REFERENCES pools(id),
    slug TEXT NOT NULL UNIQUE,
    name_en TEXT NOT NULL,
    name_zh TEXT NOT NULL,
    units INTEGER NOT NULL DEFAULT 1 CHECK (units >= 1),
    min_qty INTEGER NOT NULL DEFAULT 1 CHECK (min_qty >= 1),
    max_qty INTEGER NOT NULL DEFAULT 10 CHECK (max_qty >= min_qty),
    per_user_limit INTEGER NOT NULL DEFAULT 0 CHECK (per_user_limit >= 0),
    active INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE prices (
    sku_id INTEGER NOT NULL REFERENCES skus(id),
    channel TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (sku_id, channel)
);
CREATE TABLE vault_keys (
    key_id TEXT PRIMARY KEY,
    key_check BLOB NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE code_batches (
    id INTEGER PRIMARY KEY,
    pool_id INTEGER NOT NULL REFERENCES pools(id),
    supplier TEXT NOT NULL DEFAULT '',
    unit_cost INTEGER NOT NULL DEFAULT 0 CHECK (unit_cost >= 0),
    currency TEXT NOT NULL DEFAULT 'CNY',
    source TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    imported INTEGER NOT NULL DEFAULT 0,
    duplicate_in_vault INTEGER NOT NULL DEFAULT 0,
    duplicate_in_batch INTEGER NOT NULL DEFAULT 0,
    invalid INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE codes (
    id INTEGER PRIMARY KEY,
    pool_id INTEGER NOT NULL REFERENCES pools(id),
    batch_id INTEGER NOT NULL REFERENCES code_batches(id),
    digest BLOB NOT NULL UNIQUE,
    key_id TEXT NOT NULL,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    uses_total INTEGER NOT NULL CHECK (uses_total >= 1),
    uses_left INTEGER NOT NULL CHECK (uses_left >= 0 AND uses_left <= uses_total),
    expires_at TEXT,
    note TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'available',
    unit_cost INTEGER NOT NULL DEFAULT 0,  -- per use, copied from the batch so allocation needs no join
    cost_currency TEXT NOT NULL DEFAULT 'CNY',
    created_at TEXT NOT NULL
);
CREATE INDEX codes_claimable ON codes (pool_id, id) WHERE uses_left > 0 AND status = 'available';
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    ref TEXT NOT NULL UNIQUE,
    channel TEXT NOT NULL,
    user_id TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    sku_id INTEGER NOT NULL REFERENCES skus(id),
    pool_id INTEGER NOT NULL REFERENCES pools(id),
    quantity INTEGER NOT NULL CHECK (quantity >= 1),
    units INTEGER NOT NULL CHECK (units >= 1),
    amount INTEGER NOT NULL CHECK (amount >= 0),
    currency TEXT NOT NULL,
    state TEXT NOT NULL,
    language TEXT NOT NULL DEFAULT 'en',
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX orders_holding ON orders (expires_at) WHERE state IN ('reserved', 'awaiting_payment');
CREATE INDEX orders_user ON orders (channel, user_id, id);
CREATE INDEX orders_user_sku ON orders (user_id, sku_id);
CREATE TABLE order_events (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL REFERENCES orders(id),
    from_state TEXT,
    to_state TEXT NOT NULL,
    cause TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX order_events_order ON order_events (order_id, id);
CREATE TABLE order_items (
    order_id INTEGER NOT NULL REFERENCES orders(id),
    item_no INTEGER NOT NULL,
    code_id INTEGER NOT NULL REFERENCES codes(id),
    use_no INTEGER NOT NULL,
    unit_cost INTEGER NOT NULL,
    cost_currency TEXT NOT NULL,
    revealed_at TEXT,
    released INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (order_id, item_no)
);
-- invariant 1: one use of one code belongs to at most one live order item
CREATE UNIQUE INDEX order_items_code_use ON order_items (code_id, use_no) WHERE released = 0;
CREATE TABLE payment_events (
    id INTEGER PRIMARY KEY,
    provider TEXT NOT NULL,
    provider_txn_id TEXT NOT NULL,
    order_ref TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    fee INTEGER NOT NULL DEFAULT 0,
    payer TEXT NOT NULL DEFAULT '',
    received_at TEXT NOT NULL,
    applied_at TEXT,
    outcome TEXT,
    order_id INTEGER,
    detail TEXT NOT NULL DEFAULT '',
    UNIQUE (provider, provider_txn_id)
);
CREATE INDEX payment_events_unapplied ON payment_events (id) WHERE applied_at IS NULL;
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL REFERENCES orders(id),
    kind TEXT NOT NULL,
    channel TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    payload TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    locked_until TEXT,
    last_error TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    done_at TEXT
);
CREATE UNIQUE INDEX outbox_once ON outbox (order_id, kind) WHERE kind IN ('deliver', 'refund');
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'pending';
CREATE TABLE ledger (
    id INTEGER PRIMARY KEY,
    order_id INTEGER REFERENCES orders(id),
    sku_id INTEGER NOT NULL,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount INTEGER NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX ledger_at ON ledger (at);
