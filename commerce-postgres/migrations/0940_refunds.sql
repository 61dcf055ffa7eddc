-- The refund ledger (issue 15): what each order paid per line and for shipping, what
-- has been refunded, and every refund. Amounts are integers in the currency's minor
-- units. The CHECK constraints are the guard: a refund is one UPDATE that adds to the
-- running totals, and a total that would pass what was paid violates a constraint, so
-- the whole statement (refund row included) is rolled back. Concurrent refunds of one
-- order queue on its refund_orders row (always updated first), so each sees the totals
-- the previous one left.

CREATE TABLE refund_orders (
    order_id          text PRIMARY KEY,
    currency          text NOT NULL,
    body              jsonb NOT NULL,          -- the PaidOrder as opened
    shipping_paid     bigint NOT NULL CHECK (shipping_paid >= 0),
    shipping_refunded bigint NOT NULL DEFAULT 0,
    total_paid        bigint NOT NULL CHECK (total_paid >= 0),
    total_refunded    bigint NOT NULL DEFAULT 0,
    opened_at         timestamptz NOT NULL,
    CONSTRAINT refund_orders_within_paid CHECK (
        shipping_refunded BETWEEN 0 AND shipping_paid
        AND total_refunded BETWEEN 0 AND total_paid
    )
);

CREATE TABLE refund_lines (
    order_id       text NOT NULL REFERENCES refund_orders ON DELETE CASCADE,
    position       int NOT NULL,
    sku            text NOT NULL,
    quantity       int NOT NULL CHECK (quantity > 0),
    paid           bigint NOT NULL CHECK (paid >= 0),
    refunded_units int NOT NULL DEFAULT 0,
    refunded       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (order_id, sku),
    UNIQUE (order_id, position),
    CONSTRAINT refund_lines_within_paid CHECK (
        refunded_units BETWEEN 0 AND quantity
        AND refunded BETWEEN 0 AND paid
    )
);

CREATE TABLE refunds (
    order_id   text NOT NULL REFERENCES refund_orders ON DELETE CASCADE,
    refund_key text NOT NULL,
    seq        bigserial,
    request    jsonb NOT NULL,                 -- the RefundRequest
    shipping   bigint NOT NULL CHECK (shipping >= 0),
    total      bigint NOT NULL CHECK (total >= 0),
    created_at timestamptz NOT NULL,
    PRIMARY KEY (order_id, refund_key)
);
CREATE INDEX refunds_in_order ON refunds (order_id, seq);
