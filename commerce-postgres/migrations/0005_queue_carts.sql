-- The order queue (claimed with FOR UPDATE SKIP LOCKED) and server-side carts.

CREATE TABLE queue_jobs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id    text COLLATE "C" NOT NULL,
    enqueued_at timestamptz NOT NULL,
    run_at      timestamptz NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    lease_until timestamptz,
    last_error  text
);
CREATE INDEX queue_jobs_due ON queue_jobs (run_at, id);

CREATE TABLE queue_dead_letters (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         bigint NOT NULL,
    order_id   text COLLATE "C" NOT NULL,
    attempts   integer NOT NULL,
    last_error text NOT NULL,
    at         timestamptz NOT NULL
);

CREATE TABLE carts (
    id         text COLLATE "C" PRIMARY KEY,
    body       jsonb NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX carts_expiry ON carts (expires_at);
