-- Orders carry their money (issue 15): addresses, the chosen shipping option, per-line
-- tax and the tax details live in `orders.body` (jsonb) as optional fields, so rows
-- written before them read as orders without an address or line tax; no column changes.
--
-- New status PARTIALLY_REFUNDED (returns of some units). The status column had no
-- check; this one names every status the code knows. NOT VALID: existing rows are not
-- scanned (they only hold the older names), new and updated rows are checked.
ALTER TABLE orders ADD CONSTRAINT orders_status_known CHECK (status IN (
    'CREATED', 'PAYMENT_PENDING', 'PAYMENT_CONFIRMED', 'PREPARING', 'SHIPPED',
    'DELIVERED', 'CANCELLED', 'REFUNDED', 'PARTIALLY_REFUNDED')) NOT VALID;

-- Orders by destination country (tax and shipping reports).
CREATE INDEX orders_ship_country ON orders ((body #>> '{checkout,shipping_address,country}'), id)
    WHERE body ? 'checkout';
