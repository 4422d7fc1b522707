-- Procurement after payment (issue 14): an order of an on-demand or recharge SKU may be reserved without stock
-- (`backorder`: it holds no uses of its pool; a paid one that own stock cannot serve waits on a supplier in
-- `delivering` with a `procure` outbox row). Every hand-back of held uses skips backorders.
ALTER TABLE orders ADD COLUMN backorder INTEGER NOT NULL DEFAULT 0;
