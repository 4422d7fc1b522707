-- kamibot schema v3 (SQLite): state shared by all processes (claim-once keys, small values with expiry,
-- leases for single-holder jobs) and the risk module (rules history, list entries, decision log).
CREATE TABLE once_keys (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE TABLE kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires_at TEXT
);
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until TEXT NOT NULL
);
CREATE TABLE risk_rules (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE risk_lists (
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    list TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    at TEXT NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE TABLE risk_decisions (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    stage TEXT NOT NULL,
    channel TEXT NOT NULL,
    user_id TEXT NOT NULL,
    ip TEXT NOT NULL DEFAULT '',
    fingerprint TEXT NOT NULL DEFAULT '',
    order_id INTEGER,
    sku_id INTEGER,
    decision TEXT NOT NULL,
    score INTEGER NOT NULL,
    reasons TEXT NOT NULL DEFAULT ''
);
CREATE INDEX risk_decisions_user ON risk_decisions (channel, user_id, id);
CREATE INDEX risk_decisions_ip ON risk_decisions (ip, id);
CREATE INDEX risk_decisions_order ON risk_decisions (order_id, id)
