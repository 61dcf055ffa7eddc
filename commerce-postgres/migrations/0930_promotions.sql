-- Promotions, coupon codes and redemptions. Every limit is enforced by one guarded
-- statement on the row that carries it (no read-then-write); the CHECK constraints are
-- a second line of defence.

CREATE TABLE promotions (
    id                    text PRIMARY KEY,
    body                  jsonb NOT NULL,
    currency              text NOT NULL,
    automatic             boolean NOT NULL,
    starts_at             timestamptz,
    ends_at               timestamptz,
    total_limit           bigint CHECK (total_limit > 0),
    per_customer_limit    bigint CHECK (per_customer_limit > 0),
    budget_minor          bigint CHECK (budget_minor > 0),
    -- Held by active and confirmed redemptions.
    uses                  bigint NOT NULL DEFAULT 0 CHECK (uses >= 0),
    spent_minor           bigint NOT NULL DEFAULT 0 CHECK (spent_minor >= 0),
    confirmed_uses        bigint NOT NULL DEFAULT 0 CHECK (confirmed_uses >= 0),
    confirmed_spent_minor bigint NOT NULL DEFAULT 0 CHECK (confirmed_spent_minor >= 0),
    created_at            timestamptz NOT NULL,
    CHECK (total_limit IS NULL OR uses <= total_limit),
    CHECK (budget_minor IS NULL OR spent_minor <= budget_minor)
);
CREATE INDEX promotions_automatic ON promotions (id COLLATE "C") WHERE automatic;

CREATE TABLE promotion_codes (
    code         text PRIMARY KEY,
    promotion_id text NOT NULL REFERENCES promotions (id),
    single_use   boolean NOT NULL,
    -- The order holding a single-use code (active or confirmed redemption).
    holder       text
);

CREATE TABLE promotion_customer_uses (
    promotion_id text NOT NULL REFERENCES promotions (id),
    customer_id  text NOT NULL,
    uses         bigint NOT NULL CHECK (uses >= 0),
    PRIMARY KEY (promotion_id, customer_id)
);

CREATE TABLE promotion_redemptions (
    order_id          text PRIMARY KEY,
    customer_id       text,
    currency          text NOT NULL,
    order_total_minor bigint NOT NULL,
    lines             jsonb NOT NULL,
    state             text NOT NULL CHECK (state IN ('active', 'confirmed', 'released')),
    reason            text,
    expires_at        timestamptz NOT NULL,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX promotion_redemptions_due ON promotion_redemptions (expires_at, order_id)
    WHERE state = 'active';
