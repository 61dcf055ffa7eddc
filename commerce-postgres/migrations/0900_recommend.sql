-- Co-purchase counts ("customers who bought X also bought Y") and shopper histories.

-- Orders already counted: recording is exactly once per order id.
CREATE TABLE co_purchase_orders (
    order_id    text PRIMARY KEY,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- Orders that contained a product (the cold-start ranking).
CREATE TABLE co_purchase_popularity (
    product_id text PRIMARY KEY,
    orders     bigint NOT NULL CHECK (orders > 0)
);
CREATE INDEX co_purchase_popularity_rank ON co_purchase_popularity (orders DESC, product_id);

-- Orders that contained both `product_id` and `other_id` (directed: both directions kept).
CREATE TABLE co_purchase_pairs (
    product_id text NOT NULL,
    other_id   text NOT NULL,
    orders     bigint NOT NULL CHECK (orders > 0),
    PRIMARY KEY (product_id, other_id)
);
-- Serves top-K per product as an index range scan, already ranked.
CREATE INDEX co_purchase_pairs_rank ON co_purchase_pairs (product_id, orders DESC, other_id);

-- What shoppers viewed, carted and bought; `seq` orders equal times by recording order.
CREATE TABLE shopper_history (
    customer_id text NOT NULL,
    seq         bigserial,
    product_id  text NOT NULL,
    brand       text NOT NULL,
    category    text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('viewed', 'carted', 'bought')),
    at          timestamptz NOT NULL,
    PRIMARY KEY (customer_id, seq),
    UNIQUE (customer_id, product_id, kind, at)
);
CREATE INDEX shopper_history_recent ON shopper_history (customer_id, at DESC, seq DESC);
