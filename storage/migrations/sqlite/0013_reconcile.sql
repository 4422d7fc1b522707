-- issue 16 reconciliation: discrepancies found against WeChat Pay bills, Telegram Star transactions and supplier
-- records (each once per source, kind and reference; reported to merchants once, resolved with a note), and the
-- ledger corrections a reconciliation made (each once: a second run of the same bill corrects nothing).
CREATE TABLE discrepancies (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    reference TEXT NOT NULL,
    order_ref TEXT NOT NULL DEFAULT '',
    currency TEXT NOT NULL DEFAULT '',
    expected INTEGER,
    actual INTEGER,
    detail TEXT NOT NULL DEFAULT '',
    period TEXT NOT NULL DEFAULT '',
    found_at TEXT NOT NULL,
    reported_at TEXT,
    resolved_at TEXT,
    resolved_by TEXT NOT NULL DEFAULT '',
    note TEXT NOT NULL DEFAULT '',
    UNIQUE (source, kind, reference)
);
CREATE INDEX discrepancies_open ON discrepancies (id) WHERE resolved_at IS NULL;
CREATE INDEX discrepancies_unreported ON discrepancies (id) WHERE reported_at IS NULL;
CREATE TABLE ledger_corrections (
    source TEXT NOT NULL,
    reference TEXT NOT NULL,
    kind TEXT NOT NULL,
    order_id INTEGER,  -- no foreign key: a record of what was booked, checked by the ledger line itself
    actual INTEGER NOT NULL,
    delta INTEGER NOT NULL DEFAULT 0,
    at TEXT NOT NULL,
    PRIMARY KEY (source, reference, kind)
);
CREATE INDEX recon_payment_events_received ON payment_events (provider, received_at);
CREATE INDEX recon_ledger_order ON ledger (order_id, kind);
CREATE INDEX recon_procurements_supplier ON procurements (supplier, created_at)
