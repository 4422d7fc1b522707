-- Direct recharge SKUs (issue 14): a SKU's target rule (NULL: codes; 'mobile'; 're:PATTERN') and an order's
-- checked target (a mobile number or an account id), written with the reservation.
ALTER TABLE skus ADD COLUMN target_rule TEXT;
ALTER TABLE orders ADD COLUMN target TEXT;
