-- The hot-SKU request combiner's statement: reserves many single-line requests for
-- ONE SKU in one transaction (one lock hold and one commit for the whole batch).
-- Each request succeeds or fails on its own, in array order, with the same location
-- policy and idempotency as reserve(); a failed request writes nothing.
-- Returns one row per request: outcome 'created' | 'existing' | 'out_of_stock' |
-- 'unknown_sku', with the reservation (or requested/available for out_of_stock).
CREATE FUNCTION reserve_batch(
    p_orders text[], p_sku text, p_qtys bigint[], p_lines jsonb[],
    p_now timestamptz, p_expires timestamptz[], p_events jsonb[], p_channel text)
RETURNS TABLE (order_id text, outcome text, lines jsonb, allocations jsonb, state text,
               created_at timestamptz, expires_at timestamptz, closed_at timestamptz,
               reason text, available bigint)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    i int;
    v_q bigint;
    v_left bigint;
    v_take bigint;
    v_loc text;
    v_total bigint;
    v_allowed boolean;
    v_meta boolean;
    v_allocs jsonb;
    v_events jsonb[] := '{}';
    v_mov_loc text[] := '{}';
    v_mov_q bigint[] := '{}';
    v_mov_o text[] := '{}';
    r record;
BEGIN
    FOR i IN 1 .. array_length(p_orders, 1) LOOP
        v_q := p_qtys[i];
        INSERT INTO reservations AS t (order_id, lines, allocations, state, created_at, expires_at)
        VALUES (p_orders[i], p_lines[i], '[]'::jsonb, 'ACTIVE', p_now, p_expires[i])
        ON CONFLICT (order_id) DO NOTHING;
        IF NOT FOUND THEN
            RETURN QUERY SELECT t.order_id, 'existing'::text, t.lines, t.allocations, t.state,
                t.created_at, t.expires_at, t.closed_at, t.reason, NULL::bigint
              FROM reservations t WHERE t.order_id = p_orders[i];
            CONTINUE;
        END IF;
        v_allocs := '[]'::jsonb;
        UPDATE stock_levels l
           SET available = l.available - v_q, reserved = l.reserved + v_q
         WHERE l.sku = p_sku AND l.available >= v_q
           AND l.location = (SELECT min(c.location) FROM stock_levels c WHERE c.sku = p_sku)
        RETURNING l.location INTO v_loc;
        IF FOUND THEN
            v_allocs := jsonb_build_array(jsonb_build_object('sku', p_sku, 'location', v_loc, 'quantity', v_q));
            v_mov_loc := v_mov_loc || v_loc;
            v_mov_q := v_mov_q || v_q;
            v_mov_o := v_mov_o || p_orders[i];
        ELSE
            v_total := 0;
            v_loc := NULL;
            FOR r IN SELECT c.location, c.available FROM stock_levels c
                      WHERE c.sku = p_sku ORDER BY c.location FOR UPDATE LOOP
                v_total := v_total + r.available;
                IF v_loc IS NULL AND r.available >= v_q THEN
                    v_loc := r.location;
                END IF;
            END LOOP;
            SELECT s.backorder_allowed INTO v_allowed FROM stock_skus s WHERE s.sku = p_sku FOR UPDATE;
            v_meta := FOUND;
            IF v_loc IS NULL AND v_total = 0 AND NOT v_meta
               AND NOT EXISTS (SELECT 1 FROM stock_levels c WHERE c.sku = p_sku) THEN
                DELETE FROM reservations t WHERE t.order_id = p_orders[i];
                RETURN QUERY SELECT p_orders[i], 'unknown_sku'::text, NULL::jsonb, NULL::jsonb,
                    NULL::text, NULL::timestamptz, NULL::timestamptz, NULL::timestamptz,
                    NULL::text, 0::bigint;
                CONTINUE;
            END IF;
            IF v_loc IS NULL AND v_total < v_q AND NOT coalesce(v_allowed, false) THEN
                DELETE FROM reservations t WHERE t.order_id = p_orders[i];
                RETURN QUERY SELECT p_orders[i], 'out_of_stock'::text, NULL::jsonb, NULL::jsonb,
                    NULL::text, NULL::timestamptz, NULL::timestamptz, NULL::timestamptz,
                    NULL::text, v_total;
                CONTINUE;
            END IF;
            IF v_loc IS NOT NULL THEN
                UPDATE stock_levels c SET available = c.available - v_q, reserved = c.reserved + v_q
                 WHERE c.sku = p_sku AND c.location = v_loc;
                v_allocs := jsonb_build_array(jsonb_build_object('sku', p_sku, 'location', v_loc, 'quantity', v_q));
                v_mov_loc := v_mov_loc || v_loc;
                v_mov_q := v_mov_q || v_q;
                v_mov_o := v_mov_o || p_orders[i];
            ELSE
                v_left := v_q;
                FOR r IN SELECT c.location, c.available FROM stock_levels c
                          WHERE c.sku = p_sku AND c.available > 0 ORDER BY c.location LOOP
                    EXIT WHEN v_left = 0;
                    v_take := least(r.available, v_left);
                    UPDATE stock_levels c SET available = c.available - v_take, reserved = c.reserved + v_take
                     WHERE c.sku = p_sku AND c.location = r.location;
                    v_allocs := v_allocs || jsonb_build_object('sku', p_sku, 'location', r.location, 'quantity', v_take);
                    v_mov_loc := v_mov_loc || r.location;
                    v_mov_q := v_mov_q || v_take;
                    v_mov_o := v_mov_o || p_orders[i];
                    v_left := v_left - v_take;
                END LOOP;
                IF v_left > 0 THEN
                    UPDATE stock_skus s SET backordered = s.backordered + v_left WHERE s.sku = p_sku;
                    v_allocs := v_allocs || jsonb_build_object('sku', p_sku, 'location', NULL, 'quantity', v_left);
                END IF;
            END IF;
        END IF;
        UPDATE reservations t SET allocations = v_allocs WHERE t.order_id = p_orders[i];
        v_events := v_events || p_events[i];
        RETURN QUERY SELECT p_orders[i], 'created'::text, p_lines[i], v_allocs, 'ACTIVE'::text,
            p_now, p_expires[i], NULL::timestamptz, NULL::text, NULL::bigint;
    END LOOP;
    INSERT INTO stock_movements (sku, location, kind, quantity, order_id, at)
    SELECT p_sku, m.l, 'reserved', m.q, m.o, p_now
      FROM unnest(v_mov_loc, v_mov_q, v_mov_o) WITH ORDINALITY AS m(l, q, o, n) ORDER BY m.n;
    IF array_length(v_events, 1) > 0 THEN
        PERFORM append_events(p_now, v_events, p_channel);
    END IF;
END
$$;
