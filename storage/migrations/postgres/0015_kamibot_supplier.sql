-- issue 14 item 3: another kamibot shop as a supplier (fulfillment/suppliers/kamibot.py)
ALTER TABLE suppliers DROP CONSTRAINT IF EXISTS suppliers_protocol_check;
ALTER TABLE suppliers ADD CONSTRAINT suppliers_protocol_check CHECK (protocol IN ('kashangwl', 'acgfaka', 'kamibot'));
