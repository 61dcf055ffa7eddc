-- Core tables of commerce-postgres: the outbox, inventory and orders.
-- Runs with search_path set to the configured schema; never names a schema itself.
-- Identifier columns use COLLATE "C" so that ORDER BY matches Rust's byte order.

-- Outbox -------------------------------------------------------------------------
CREATE SEQUENCE event_ids AS bigint;

CREATE TABLE events (
    id      bigint PRIMARY KEY,
    at      timestamptz NOT NULL,
    payload jsonb NOT NULL
);
CREATE INDEX events_at ON events (at);

CREATE TABLE event_checkpoints (
    consumer text COLLATE "C" PRIMARY KEY,
    up_to    bigint NOT NULL
);

-- Appends events in order and returns their ids. Every appender holds a shared
-- transaction-level advisory lock (keyed by the schema) from before it draws ids until
-- it commits; a reader takes the same lock exclusively, so it only ever reads once
-- every id below the ones it sees has committed or rolled back (no gaps).
CREATE FUNCTION append_events(p_at timestamptz, p_payloads jsonb[], p_channel text)
RETURNS SETOF bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    v_payload jsonb;
    v_id bigint;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1668246881, hashtext(current_schema()));
    FOREACH v_payload IN ARRAY p_payloads LOOP
        v_id := nextval('event_ids');
        INSERT INTO events (id, at, payload) VALUES (v_id, p_at, v_payload);
        RETURN NEXT v_id;
    END LOOP;
    IF p_channel IS NOT NULL THEN
        PERFORM pg_notify(p_channel, '');
    END IF;
END
$$;

-- Inventory ----------------------------------------------------------------------
CREATE TABLE stock_skus (
    sku               text COLLATE "C" PRIMARY KEY,
    backorder_allowed boolean NOT NULL DEFAULT false,
    -- live backordered allocations plus confirmed ones not yet filled
    backordered       bigint NOT NULL DEFAULT 0 CHECK (backordered >= 0),
    -- confirmed backordered units not yet filled by a restock
    owed              bigint NOT NULL DEFAULT 0 CHECK (owed >= 0)
);

CREATE TABLE stock_levels (
    sku       text COLLATE "C" NOT NULL,
    location  text COLLATE "C" NOT NULL,
    received  bigint NOT NULL DEFAULT 0 CHECK (received >= 0),
    adjusted  bigint NOT NULL DEFAULT 0,
    available bigint NOT NULL DEFAULT 0 CHECK (available >= 0),
    reserved  bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    sold      bigint NOT NULL DEFAULT 0 CHECK (sold >= 0),
    PRIMARY KEY (sku, location)
) WITH (fillfactor = 80);

CREATE TABLE reservations (
    order_id    text COLLATE "C" PRIMARY KEY,
    lines       jsonb NOT NULL,
    allocations jsonb NOT NULL,
    state       text NOT NULL CHECK (state IN ('ACTIVE', 'CONFIRMED', 'RELEASED', 'RETURNED')),
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    closed_at   timestamptz,
    reason      text
) WITH (fillfactor = 80);
CREATE INDEX reservations_due ON reservations (expires_at, order_id) WHERE state = 'ACTIVE';

CREATE TABLE stock_movements (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku      text COLLATE "C" NOT NULL,
    location text COLLATE "C",
    kind     text NOT NULL,
    quantity bigint NOT NULL,
    order_id text COLLATE "C",
    reason   text,
    at       timestamptz NOT NULL
);
CREATE INDEX stock_movements_sku ON stock_movements (sku, id);

-- Reserves `p_skus[i] x p_qtys[i]` (sorted by SKU, merged) for `p_order`, all or
-- nothing, in one round trip: the reservation row, the guarded counter updates (rows
-- locked in (sku, location) order), the ledger and the outbox event.
-- Returns ('created' | 'existing', lines, allocations, state, created_at, expires_at,
-- closed_at, reason). Errors: SQLSTATE CM001 out of stock (DETAIL = json
-- {sku, requested, available}), CM002 unknown SKU (DETAIL = sku).
CREATE FUNCTION reserve(
    p_order text, p_skus text[], p_qtys bigint[], p_lines jsonb,
    p_now timestamptz, p_expires timestamptz, p_event jsonb, p_channel text)
RETURNS TABLE (outcome text, lines jsonb, allocations jsonb, state text,
               created_at timestamptz, expires_at timestamptz, closed_at timestamptz,
               reason text)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    i int;
    v_sku text;
    v_q bigint;
    v_left bigint;
    v_take bigint;
    v_loc text;
    v_total bigint;
    v_allowed boolean;
    v_meta boolean;
    v_allocs jsonb := '[]'::jsonb;
    v_mov_sku text[] := '{}';
    v_mov_loc text[] := '{}';
    v_mov_q bigint[] := '{}';
    r record;
BEGIN
    INSERT INTO reservations AS t (order_id, lines, allocations, state, created_at, expires_at)
    VALUES (p_order, p_lines, '[]'::jsonb, 'ACTIVE', p_now, p_expires)
    ON CONFLICT (order_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'existing'::text, t.lines, t.allocations, t.state, t.created_at,
            t.expires_at, t.closed_at, t.reason FROM reservations t WHERE t.order_id = p_order;
        RETURN;
    END IF;
    FOR i IN 1 .. array_length(p_skus, 1) LOOP
        v_sku := p_skus[i];
        v_q := p_qtys[i];
        -- Fast path: the SKU's first location (lowest id) covers the whole line. The
        -- guarded UPDATE locks only that row and re-checks `available >= v_q` on its
        -- newest version. (If the re-check fails the row stays locked; it is the
        -- SKU's first row, so the slow path below still locks in location order.)
        UPDATE stock_levels l
           SET available = l.available - v_q, reserved = l.reserved + v_q
         WHERE l.sku = v_sku AND l.available >= v_q
           AND l.location = (SELECT min(c.location) FROM stock_levels c WHERE c.sku = v_sku)
        RETURNING l.location INTO v_loc;
        IF FOUND THEN
            v_allocs := v_allocs || jsonb_build_object('sku', v_sku, 'location', v_loc, 'quantity', v_q);
            v_mov_sku := v_mov_sku || v_sku;
            v_mov_loc := v_mov_loc || v_loc;
            v_mov_q := v_mov_q || v_q;
            CONTINUE;
        END IF;
        -- Slow path: lock every level of the SKU in location order, then its record;
        -- serve from the first location that covers the line, else split greedily
        -- over the locations in order, then backorder if allowed.
        v_total := 0;
        v_loc := NULL;
        FOR r IN SELECT c.location, c.available FROM stock_levels c
                  WHERE c.sku = v_sku ORDER BY c.location FOR UPDATE LOOP
            v_total := v_total + r.available;
            IF v_loc IS NULL AND r.available >= v_q THEN
                v_loc := r.location;
            END IF;
        END LOOP;
        SELECT s.backorder_allowed INTO v_allowed FROM stock_skus s WHERE s.sku = v_sku FOR UPDATE;
        v_meta := FOUND;
        IF v_loc IS NOT NULL THEN
            UPDATE stock_levels c SET available = c.available - v_q, reserved = c.reserved + v_q
             WHERE c.sku = v_sku AND c.location = v_loc;
            v_allocs := v_allocs || jsonb_build_object('sku', v_sku, 'location', v_loc, 'quantity', v_q);
            v_mov_sku := v_mov_sku || v_sku;
            v_mov_loc := v_mov_loc || v_loc;
            v_mov_q := v_mov_q || v_q;
            CONTINUE;
        END IF;
        IF v_total = 0 AND NOT v_meta AND NOT EXISTS (SELECT 1 FROM stock_levels c WHERE c.sku = v_sku) THEN
            RAISE EXCEPTION 'unknown sku' USING ERRCODE = 'CM002', DETAIL = v_sku;
        END IF;
        IF v_total < v_q AND NOT coalesce(v_allowed, false) THEN
            RAISE EXCEPTION 'out of stock' USING ERRCODE = 'CM001',
                DETAIL = jsonb_build_object('sku', v_sku, 'requested', v_q, 'available', v_total)::text;
        END IF;
        v_left := v_q;
        FOR r IN SELECT c.location, c.available FROM stock_levels c
                  WHERE c.sku = v_sku AND c.available > 0 ORDER BY c.location LOOP
            EXIT WHEN v_left = 0;
            v_take := least(r.available, v_left);
            UPDATE stock_levels c SET available = c.available - v_take, reserved = c.reserved + v_take
             WHERE c.sku = v_sku AND c.location = r.location;
            v_allocs := v_allocs || jsonb_build_object('sku', v_sku, 'location', r.location, 'quantity', v_take);
            v_mov_sku := v_mov_sku || v_sku;
            v_mov_loc := v_mov_loc || r.location;
            v_mov_q := v_mov_q || v_take;
            v_left := v_left - v_take;
        END LOOP;
        IF v_left > 0 THEN
            UPDATE stock_skus s SET backordered = s.backordered + v_left WHERE s.sku = v_sku;
            v_allocs := v_allocs || jsonb_build_object('sku', v_sku, 'location', NULL, 'quantity', v_left);
        END IF;
    END LOOP;
    UPDATE reservations t SET allocations = v_allocs WHERE t.order_id = p_order;
    INSERT INTO stock_movements (sku, location, kind, quantity, order_id, at)
    SELECT m.s, m.l, 'reserved', m.q, p_order, p_now
      FROM unnest(v_mov_sku, v_mov_loc, v_mov_q) AS m(s, l, q);
    PERFORM append_events(p_now, ARRAY[p_event], p_channel);
    RETURN QUERY SELECT 'created'::text, p_lines, v_allocs, 'ACTIVE'::text, p_now, p_expires,
        NULL::timestamptz, NULL::text;
END
$$;

-- Orders -------------------------------------------------------------------------
CREATE TABLE orders (
    id              text COLLATE "C" PRIMARY KEY,
    customer_id     text COLLATE "C" NOT NULL,
    idempotency_key text COLLATE "C" NOT NULL UNIQUE,
    status          text NOT NULL,
    version         bigint NOT NULL,
    body            jsonb NOT NULL,
    payment_ref     text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX orders_status ON orders (status, id);
CREATE INDEX orders_customer ON orders (customer_id, id);

CREATE TABLE order_history (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id  text COLLATE "C" NOT NULL REFERENCES orders (id),
    from_status text,
    to_status text NOT NULL,
    reason    text NOT NULL,
    at        timestamptz NOT NULL
);
CREATE INDEX order_history_order ON order_history (order_id, id);
