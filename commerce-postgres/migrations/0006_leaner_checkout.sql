-- Fewer statements per checkout step, same writes and events in the same order:
-- reserve() skips its own event when given none, place_order() and
-- complete_payment() append all their events with one append_events() call and
-- write their history rows with one INSERT.

CREATE OR REPLACE FUNCTION reserve(
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
    IF p_event IS NOT NULL THEN
        PERFORM append_events(p_now, ARRAY[p_event], p_channel);
    END IF;
    RETURN QUERY SELECT 'created'::text, p_lines, v_allocs, 'ACTIVE'::text, p_now, p_expires,
        NULL::timestamptz, NULL::text;
END
$$;

CREATE OR REPLACE FUNCTION place_order(
    p_id text, p_customer text, p_key text, p_body jsonb, p_now timestamptz,
    p_skus text[], p_qtys bigint[], p_lines jsonb, p_expires timestamptz,
    p_created_event jsonb, p_reservation_event jsonb, p_pending_event jsonb,
    p_reason text)
RETURNS TABLE (outcome text, id text, customer_id text, status text, version bigint,
               body jsonb, payment_ref text, created_at timestamptz, updated_at timestamptz)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
BEGIN
    INSERT INTO orders (id, customer_id, idempotency_key, status, version, body,
                        payment_ref, created_at, updated_at)
    VALUES (p_id, p_customer, p_key, 'PAYMENT_PENDING', 2, p_body, NULL, p_now, p_now)
    ON CONFLICT (idempotency_key) DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'existing'::text, o.id, o.customer_id, o.status, o.version,
            o.body, o.payment_ref, o.created_at, o.updated_at
          FROM orders o WHERE o.idempotency_key = p_key;
        RETURN;
    END IF;
    PERFORM 1 FROM reserve(p_id, p_skus, p_qtys, p_lines, p_now, p_expires, NULL, NULL) r
     WHERE r.outcome = 'created';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'order already has a reservation' USING ERRCODE = 'CM003';
    END IF;
    INSERT INTO order_history (order_id, from_status, to_status, reason, at)
    VALUES (p_id, NULL, 'CREATED', 'created', p_now),
           (p_id, 'CREATED', 'PAYMENT_PENDING', p_reason, p_now);
    PERFORM append_events(p_now,
        ARRAY[p_created_event, p_reservation_event, p_pending_event], NULL);
    RETURN QUERY SELECT 'created'::text, o.id, o.customer_id, o.status, o.version, o.body,
        o.payment_ref, o.created_at, o.updated_at FROM orders o WHERE o.id = p_id;
END
$$;

CREATE OR REPLACE FUNCTION complete_payment(
    p_order text, p_payment_ref text, p_now timestamptz, p_reason text,
    p_paid_event jsonb)
RETURNS TABLE (id text, customer_id text, status text, version bigint, body jsonb,
               payment_ref text, created_at timestamptz, updated_at timestamptz)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    v_state text;
    v_allocs jsonb;
    v_lines jsonb;
    v_at timestamptz;
    v_events jsonb[] := '{}';
    v_status text;
    a record;
BEGIN
    UPDATE orders o SET status = 'PAYMENT_CONFIRMED', version = o.version + 1,
           updated_at = GREATEST(o.updated_at, p_now),
           payment_ref = COALESCE(p_payment_ref, o.payment_ref)
     WHERE o.id = p_order AND o.status = 'PAYMENT_PENDING'
    RETURNING o.updated_at INTO v_at;
    IF NOT FOUND THEN
        SELECT o.status INTO v_status FROM orders o WHERE o.id = p_order;
        RAISE EXCEPTION 'order not pending payment' USING ERRCODE = 'CM004',
            DETAIL = coalesce(v_status, '');
    END IF;
    SELECT r.state, r.allocations, r.lines INTO v_state, v_allocs, v_lines
      FROM reservations r WHERE r.order_id = p_order FOR UPDATE;
    IF NOT FOUND OR v_state NOT IN ('ACTIVE', 'CONFIRMED') THEN
        RAISE EXCEPTION 'reservation cannot be confirmed' USING ERRCODE = 'CM005',
            DETAIL = coalesce(v_state, '');
    END IF;
    IF v_state = 'ACTIVE' THEN
        FOR a IN SELECT x->>'sku' AS sku, x->>'location' AS loc, (x->>'quantity')::bigint AS q
                   FROM jsonb_array_elements(v_allocs) x
                  ORDER BY x->>'sku' COLLATE "C", (x->>'location') IS NULL,
                           x->>'location' COLLATE "C" LOOP
            IF a.loc IS NULL THEN
                UPDATE stock_skus s SET owed = s.owed + a.q WHERE s.sku = a.sku;
            ELSE
                UPDATE stock_levels l SET reserved = l.reserved - a.q, sold = l.sold + a.q
                 WHERE l.sku = a.sku AND l.location = a.loc;
            END IF;
        END LOOP;
        INSERT INTO stock_movements (sku, location, kind, quantity, order_id, at)
        SELECT x->>'sku', x->>'location', 'sold', (x->>'quantity')::bigint, p_order, p_now
          FROM jsonb_array_elements(v_allocs) WITH ORDINALITY AS t(x, n)
         WHERE x->>'location' IS NOT NULL ORDER BY n;
        UPDATE reservations r SET state = 'CONFIRMED', closed_at = p_now, reason = NULL
         WHERE r.order_id = p_order;
        v_events := ARRAY[jsonb_build_object(
            'type', 'reservation_changed', 'order_id', p_order, 'state', 'CONFIRMED',
            'skus', (SELECT jsonb_agg(l->>'sku' ORDER BY n)
                       FROM jsonb_array_elements(v_lines) WITH ORDINALITY AS t(l, n)))];
    END IF;
    INSERT INTO order_history (order_id, from_status, to_status, reason, at)
    VALUES (p_order, 'PAYMENT_PENDING', 'PAYMENT_CONFIRMED', p_reason, v_at);
    PERFORM append_events(p_now, v_events || p_paid_event, NULL);
    RETURN QUERY SELECT o.id, o.customer_id, o.status, o.version, o.body, o.payment_ref,
        o.created_at, o.updated_at FROM orders o WHERE o.id = p_order;
END
$$;
