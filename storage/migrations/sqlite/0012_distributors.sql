-- kamibot schema v12 (SQLite): distributors (issue 15). A distributor is an order-API client (its wallet is the
-- client's api_wallets row), a referrer in chat (customers whose users.referrer is its ref_code), or both. Its price
-- list: a discount in basis points and fixed prices per SKU (below_cost: the merchant's explicit override of the
-- cost floor). Commission in basis points, per distributor and optionally per SKU. The commission ledger: one line
-- per movement of the payable balance (accrual once per delivered order, reversal once per refunded order, payouts).
CREATE TABLE distributors (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    ref_code TEXT NOT NULL UNIQUE,
    api_client_id INTEGER UNIQUE REFERENCES api_clients(id),
    discount_bp INTEGER NOT NULL DEFAULT 0 CHECK (discount_bp BETWEEN 0 AND 10000),
    commission_bp INTEGER NOT NULL DEFAULT 0 CHECK (commission_bp BETWEEN 0 AND 10000),
    created_at TEXT NOT NULL
);
CREATE TABLE distributor_prices (
    distributor_id INTEGER NOT NULL REFERENCES distributors(id),
    sku_id INTEGER NOT NULL REFERENCES skus(id),
    currency TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount >= 0),
    below_cost INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (distributor_id, sku_id)
);
CREATE TABLE distributor_commission_rates (
    distributor_id INTEGER NOT NULL REFERENCES distributors(id),
    sku_id INTEGER NOT NULL REFERENCES skus(id),
    bp INTEGER NOT NULL CHECK (bp BETWEEN 0 AND 10000),
    PRIMARY KEY (distributor_id, sku_id)
);
CREATE TABLE distributor_ledger (
    id INTEGER PRIMARY KEY,
    distributor_id INTEGER NOT NULL REFERENCES distributors(id),
    currency TEXT NOT NULL,
    amount INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('accrual', 'reversal', 'payout')),
    order_id INTEGER REFERENCES orders(id),
    note TEXT NOT NULL DEFAULT '',
    at TEXT NOT NULL
);
CREATE INDEX distributor_ledger_at ON distributor_ledger (distributor_id, at);
-- an order's commission is accrued at most once and reversed at most once
CREATE UNIQUE INDEX distributor_ledger_order_once ON distributor_ledger (order_id, kind) WHERE order_id IS NOT NULL;
CREATE INDEX users_referrer ON users (referrer) WHERE referrer IS NOT NULL
