-- kamibot schema v9 (SQLite): the signed order API (issue 15). API clients (key id + secret encrypted under the
-- vault key), a price list per client, prepaid wallets per client and currency with a ledger line per movement, the client's order numbers
-- and Idempotency-Key responses (encrypted: they carry codes).
CREATE TABLE api_clients (
    id INTEGER PRIMARY KEY,
    key_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    secret_key_id TEXT NOT NULL,
    secret_nonce BLOB NOT NULL,
    secret_ct BLOB NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE api_wallets (
    client_id INTEGER NOT NULL REFERENCES api_clients(id),
    currency TEXT NOT NULL,
    balance INTEGER NOT NULL CHECK (balance >= 0),
    PRIMARY KEY (client_id, currency)
);
CREATE TABLE api_wallet_ledger (
    id INTEGER PRIMARY KEY,
    client_id INTEGER NOT NULL REFERENCES api_clients(id),
    currency TEXT NOT NULL,
    amount INTEGER NOT NULL,
    balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
    kind TEXT NOT NULL,
    order_id INTEGER REFERENCES orders(id),
    note TEXT NOT NULL DEFAULT '',
    at TEXT NOT NULL
);
CREATE INDEX api_wallet_ledger_client ON api_wallet_ledger (client_id, id);
CREATE UNIQUE INDEX api_wallet_ledger_order_once ON api_wallet_ledger (order_id, kind) WHERE order_id IS NOT NULL;
CREATE TABLE api_orders (
    client_id INTEGER NOT NULL REFERENCES api_clients(id),
    client_order_no TEXT NOT NULL,
    order_id INTEGER NOT NULL UNIQUE REFERENCES orders(id),
    request_hash TEXT NOT NULL,
    callback_url TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    PRIMARY KEY (client_id, client_order_no)
);
CREATE TABLE api_prices (
    client_id INTEGER NOT NULL REFERENCES api_clients(id),
    sku_id INTEGER NOT NULL REFERENCES skus(id),
    currency TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (client_id, sku_id)
);
CREATE TABLE api_idempotency (
    client_id INTEGER NOT NULL REFERENCES api_clients(id),
    idem_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    locked_until TEXT NOT NULL,
    status INTEGER,
    body_key_id TEXT,
    body_nonce BLOB,
    body_ct BLOB,
    created_at TEXT NOT NULL,
    PRIMARY KEY (client_id, idem_key)
)
