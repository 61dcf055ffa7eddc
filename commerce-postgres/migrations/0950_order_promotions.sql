-- Promotions at checkout. Orders keep what each promotion gave in their JSONB body
-- (`promotions`, each line's `discount`, `totals.discount`); rows written before this
-- migration have none and read back with zero discounts, so no order column changes.
--
-- Price lists (prices per currency and customer group, with a validity window) and the
-- customer groups they are for.

CREATE TABLE price_lists (
    id        text COLLATE "C" PRIMARY KEY,
    currency  text NOT NULL,
    starts_at timestamptz,
    ends_at   timestamptz,
    body      jsonb NOT NULL,
    CHECK (starts_at IS NULL OR ends_at IS NULL OR starts_at < ends_at)
);

CREATE TABLE customer_groups (
    customer_id text COLLATE "C" PRIMARY KEY,
    groups      text[] NOT NULL
);
