-- kamibot schema v4 (SQLite): after-sales tickets (a customer asks for a person, a refund, or reports a bad
-- code). The code is referred to by its id, never in clear; last_message is at most 500 characters.
CREATE TABLE tickets (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    user_id TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('human', 'refund', 'bad_code')),
    order_id INTEGER REFERENCES orders(id),
    code_id INTEGER REFERENCES codes(id),
    state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'answered', 'closed')),
    language TEXT NOT NULL DEFAULT '',
    last_message TEXT NOT NULL DEFAULT '' CHECK (length(last_message) <= 500),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
-- one live ticket per customer, kind and order (and code): asking again updates it instead of piling up
CREATE UNIQUE INDEX tickets_one_live ON tickets (channel, user_id, kind, COALESCE(order_id, 0), COALESCE(code_id, 0))
    WHERE state <> 'closed';
CREATE INDEX tickets_live ON tickets (id) WHERE state <> 'closed'
