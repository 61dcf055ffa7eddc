-- The order pipeline's fused steps (commerce_core::store::OrderSteps), one function per
-- step for one order and one per step for a batch of orders (each order in its own
-- subtransaction: one order's failure never fails its neighbours). reserve() is the
-- only body of the reservation logic: the steps and the hot-SKU batch call it.

DROP FUNCTION place_order(text, text, text, jsonb, timestamptz, text[], bigint[], jsonb,
                          timestamptz, jsonb, jsonb, jsonb, text);
DROP FUNCTION complete_payment(text, text, timestamptz, text, jsonb);

-- The hot-SKU combiner's statement, now a loop over reserve(): same signature and
-- outcomes ('created' | 'existing' | 'out_of_stock' | 'unknown_sku') as 0003.
CREATE OR REPLACE FUNCTION reserve_batch(
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
    v_detail text;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_orders, 1), 0) LOOP
        BEGIN
            RETURN QUERY SELECT p_orders[i], r.outcome, r.lines, r.allocations, r.state,
                r.created_at, r.expires_at, r.closed_at, r.reason, NULL::bigint
              FROM reserve(p_orders[i], ARRAY[p_sku], ARRAY[p_qtys[i]], p_lines[i], p_now,
                           p_expires[i], p_events[i], p_channel) r;
        EXCEPTION
            WHEN SQLSTATE 'CM001' THEN
                GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL;
                RETURN QUERY SELECT p_orders[i], 'out_of_stock'::text, NULL::jsonb, NULL::jsonb,
                    NULL::text, NULL::timestamptz, NULL::timestamptz, NULL::timestamptz,
                    NULL::text, (v_detail::jsonb->>'available')::bigint;
            WHEN SQLSTATE 'CM002' THEN
                RETURN QUERY SELECT p_orders[i], 'unknown_sku'::text, NULL::jsonb, NULL::jsonb,
                    NULL::text, NULL::timestamptz, NULL::timestamptz, NULL::timestamptz,
                    NULL::text, 0::bigint;
        END;
    END LOOP;
END
$$;

-- The columns a step returns: what happened, then the order and its reservation.
-- outcome: 'advanced' | 'cancelled' | 'replayed' (the step had already run).

-- OrderSteps::reserve_order for one order. p_req: {"skus": [...], "qtys": [...],
-- "lines": <normalised lines>, "reservation_event", "pending_event", "cancel_event"}.
-- Raises CM006 (unknown order), CM004 (DETAIL = status; not CREATED), CM003 (a
-- different reservation exists), CM007 (DETAIL = reservation state; inconsistent).
CREATE FUNCTION step_reserve_order(p_order text, p_req jsonb, p_now timestamptz,
                                   p_expires timestamptz)
RETURNS TABLE (outcome text, o_status text, o_version bigint, o_body jsonb,
               o_payment_ref text, o_updated_at timestamptz, r_lines jsonb,
               r_allocations jsonb, r_state text, r_created_at timestamptz,
               r_expires_at timestamptz, r_closed_at timestamptz, r_reason text)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    v_status text;
    v_res record;
    v_skus text[];
    v_qtys bigint[];
    v_to text;
    v_reason text;
    v_detail text;
    v_events jsonb[];
    v_at timestamptz;
BEGIN
    SELECT o.status INTO v_status FROM orders o WHERE o.id = p_order FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown order' USING ERRCODE = 'CM006';
    END IF;
    IF v_status <> 'CREATED' THEN
        IF v_status = 'PAYMENT_PENDING' AND EXISTS (
            SELECT 1 FROM reservations t WHERE t.order_id = p_order AND t.state = 'ACTIVE') THEN
            RETURN QUERY SELECT 'replayed'::text, o.status, o.version, o.body, o.payment_ref,
                o.updated_at, t.lines, t.allocations, t.state, t.created_at, t.expires_at,
                t.closed_at, t.reason
              FROM orders o JOIN reservations t ON t.order_id = o.id WHERE o.id = p_order;
            RETURN;
        END IF;
        RAISE EXCEPTION 'order is not CREATED' USING ERRCODE = 'CM004', DETAIL = v_status;
    END IF;
    v_skus := ARRAY(SELECT jsonb_array_elements_text(p_req->'skus'));
    v_qtys := ARRAY(SELECT x::bigint FROM jsonb_array_elements_text(p_req->'qtys') x);
    BEGIN
        SELECT * INTO v_res FROM reserve(p_order, v_skus, v_qtys, p_req->'lines', p_now,
                                         p_expires, NULL, NULL);
    EXCEPTION
        WHEN SQLSTATE 'CM001' THEN
            GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL;
            v_reason := format('out of stock: %s (requested %s, available %s)',
                v_detail::jsonb->>'sku', v_detail::jsonb->>'requested',
                v_detail::jsonb->>'available');
        WHEN SQLSTATE 'CM002' THEN
            GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL;
            v_reason := format('out of stock: %s is not stocked', v_detail);
    END;
    IF v_reason IS NOT NULL THEN
        v_to := 'CANCELLED';
        v_events := ARRAY[p_req->'cancel_event'];
    ELSIF v_res.outcome = 'existing' AND v_res.lines <> p_req->'lines' THEN
        RAISE EXCEPTION 'a different reservation exists' USING ERRCODE = 'CM003';
    ELSIF v_res.state = 'ACTIVE' THEN
        v_to := 'PAYMENT_PENDING';
        v_reason := format('validated; %s unit(s) reserved until %s UTC; awaiting payment',
            (SELECT sum(q) FROM unnest(v_qtys) q),
            to_char(v_res.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'));
        IF v_res.outcome = 'created' THEN
            v_events := ARRAY[p_req->'reservation_event', p_req->'pending_event'];
        ELSE
            v_events := ARRAY[p_req->'pending_event'];
        END IF;
    ELSIF v_res.state = 'RELEASED' THEN
        v_to := 'CANCELLED';
        v_reason := format('reservation released before payment (%s)',
                           coalesce(v_res.reason, 'released'));
        v_events := ARRAY[p_req->'cancel_event'];
    ELSE
        RAISE EXCEPTION 'inconsistent reservation' USING ERRCODE = 'CM007', DETAIL = v_res.state;
    END IF;
    UPDATE orders o SET status = v_to, version = o.version + 1,
           updated_at = GREATEST(o.updated_at, p_now)
     WHERE o.id = p_order
    RETURNING o.updated_at INTO v_at;
    INSERT INTO order_history (order_id, from_status, to_status, reason, at)
    VALUES (p_order, 'CREATED', v_to, v_reason, v_at);
    PERFORM append_events(p_now, v_events, NULL);
    RETURN QUERY SELECT CASE WHEN v_to = 'CANCELLED' THEN 'cancelled' ELSE 'advanced' END,
        o.status, o.version, o.body, o.payment_ref, o.updated_at, t.lines, t.allocations,
        t.state, t.created_at, t.expires_at, t.closed_at, t.reason
      FROM orders o LEFT JOIN reservations t ON t.order_id = o.id WHERE o.id = p_order;
END
$$;

-- OrderSteps::confirm_payment for one order. p_req: {"reservation_event" (CONFIRMED),
-- "paid_event", "cancel_event"}. Raises CM006 (unknown order), CM004 (DETAIL = status;
-- not PAYMENT_PENDING and not already paid with p_payment_ref), CM005 (no reservation).
CREATE FUNCTION step_confirm_payment(p_order text, p_payment_ref text, p_reason text,
                                     p_req jsonb, p_now timestamptz)
RETURNS TABLE (outcome text, o_status text, o_version bigint, o_body jsonb,
               o_payment_ref text, o_updated_at timestamptz, r_lines jsonb,
               r_allocations jsonb, r_state text, r_created_at timestamptz,
               r_expires_at timestamptz, r_closed_at timestamptz, r_reason text)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    v_status text;
    v_ref text;
    v_state text;
    v_allocs jsonb;
    v_to text;
    v_reason text;
    v_events jsonb[];
    v_at timestamptz;
    a record;
BEGIN
    SELECT o.status, o.payment_ref INTO v_status, v_ref FROM orders o
     WHERE o.id = p_order FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown order' USING ERRCODE = 'CM006';
    END IF;
    IF v_status <> 'PAYMENT_PENDING' THEN
        IF v_status IN ('PAYMENT_CONFIRMED', 'PREPARING', 'SHIPPED', 'DELIVERED', 'REFUNDED')
           AND v_ref = p_payment_ref THEN
            RETURN QUERY SELECT 'replayed'::text, o.status, o.version, o.body, o.payment_ref,
                o.updated_at, NULL::jsonb, NULL::jsonb, NULL::text, NULL::timestamptz,
                NULL::timestamptz, NULL::timestamptz, NULL::text
              FROM orders o WHERE o.id = p_order;
            RETURN;
        END IF;
        RAISE EXCEPTION 'order is not PAYMENT_PENDING' USING ERRCODE = 'CM004',
            DETAIL = v_status;
    END IF;
    SELECT r.state, r.allocations INTO v_state, v_allocs
      FROM reservations r WHERE r.order_id = p_order FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no reservation' USING ERRCODE = 'CM005';
    END IF;
    IF v_state = 'ACTIVE' THEN
        FOR a IN SELECT s.sku, s.loc, sum(s.q) AS q
                   FROM (SELECT x->>'sku' AS sku, x->>'location' AS loc,
                                (x->>'quantity')::bigint AS q
                           FROM jsonb_array_elements(v_allocs) x) s
                  GROUP BY s.sku, s.loc
                  ORDER BY s.sku COLLATE "C", s.loc IS NULL, s.loc COLLATE "C" LOOP
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
        v_to := 'PAYMENT_CONFIRMED';
        v_reason := p_reason;
        v_events := ARRAY[p_req->'reservation_event', p_req->'paid_event'];
    ELSIF v_state = 'CONFIRMED' THEN
        v_to := 'PAYMENT_CONFIRMED';
        v_reason := p_reason;
        v_events := ARRAY[p_req->'paid_event'];
    ELSE
        v_to := 'CANCELLED';
        v_reason := format('reservation expired during payment; payment %s refunded',
                           p_payment_ref);
        v_events := ARRAY[p_req->'cancel_event'];
    END IF;
    UPDATE orders o SET status = v_to, version = o.version + 1,
           updated_at = GREATEST(o.updated_at, p_now),
           payment_ref = CASE WHEN v_to = 'PAYMENT_CONFIRMED' THEN p_payment_ref
                              ELSE o.payment_ref END
     WHERE o.id = p_order
    RETURNING o.updated_at INTO v_at;
    INSERT INTO order_history (order_id, from_status, to_status, reason, at)
    VALUES (p_order, 'PAYMENT_PENDING', v_to, v_reason, v_at);
    PERFORM append_events(p_now, v_events, NULL);
    RETURN QUERY SELECT CASE WHEN v_to = 'CANCELLED' THEN 'cancelled' ELSE 'advanced' END,
        o.status, o.version, o.body, o.payment_ref, o.updated_at, t.lines, t.allocations,
        t.state, t.created_at, t.expires_at, t.closed_at, t.reason
      FROM orders o LEFT JOIN reservations t ON t.order_id = o.id WHERE o.id = p_order;
END
$$;

-- The batch forms: one statement and one commit for many orders, each order in its own
-- subtransaction. A failed order returns outcome 'error' with its SQLSTATE and DETAIL
-- and writes nothing; the others are unaffected.
CREATE FUNCTION step_reserve_orders(p_orders text[], p_reqs jsonb[], p_now timestamptz,
                                    p_ttl_us bigint[])
RETURNS TABLE (n int, outcome text, code text, detail text, o_status text,
               o_version bigint, o_body jsonb, o_payment_ref text,
               o_updated_at timestamptz, r_lines jsonb, r_allocations jsonb, r_state text,
               r_created_at timestamptz, r_expires_at timestamptz,
               r_closed_at timestamptz, r_reason text)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    i int;
    v_code text;
    v_detail text;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_orders, 1), 0) LOOP
        BEGIN
            RETURN QUERY SELECT i, s.outcome, NULL::text, NULL::text, s.o_status,
                s.o_version, s.o_body, s.o_payment_ref, s.o_updated_at, s.r_lines,
                s.r_allocations, s.r_state, s.r_created_at, s.r_expires_at, s.r_closed_at,
                s.r_reason
              FROM step_reserve_order(p_orders[i], p_reqs[i], p_now,
                                      p_now + p_ttl_us[i] * interval '1 microsecond') s;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_code = RETURNED_SQLSTATE, v_detail = PG_EXCEPTION_DETAIL;
            RETURN QUERY SELECT i, 'error'::text, v_code, v_detail, NULL::text, NULL::bigint,
                NULL::jsonb, NULL::text, NULL::timestamptz, NULL::jsonb, NULL::jsonb,
                NULL::text, NULL::timestamptz, NULL::timestamptz, NULL::timestamptz,
                NULL::text;
        END;
    END LOOP;
END
$$;

CREATE FUNCTION step_confirm_payments(p_orders text[], p_refs text[], p_reasons text[],
                                      p_reqs jsonb[], p_now timestamptz)
RETURNS TABLE (n int, outcome text, code text, detail text, o_status text,
               o_version bigint, o_body jsonb, o_payment_ref text,
               o_updated_at timestamptz, r_lines jsonb, r_allocations jsonb, r_state text,
               r_created_at timestamptz, r_expires_at timestamptz,
               r_closed_at timestamptz, r_reason text)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    i int;
    v_code text;
    v_detail text;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_orders, 1), 0) LOOP
        BEGIN
            RETURN QUERY SELECT i, s.outcome, NULL::text, NULL::text, s.o_status,
                s.o_version, s.o_body, s.o_payment_ref, s.o_updated_at, s.r_lines,
                s.r_allocations, s.r_state, s.r_created_at, s.r_expires_at, s.r_closed_at,
                s.r_reason
              FROM step_confirm_payment(p_orders[i], p_refs[i], p_reasons[i], p_reqs[i],
                                        p_now) s;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_code = RETURNED_SQLSTATE, v_detail = PG_EXCEPTION_DETAIL;
            RETURN QUERY SELECT i, 'error'::text, v_code, v_detail, NULL::text, NULL::bigint,
                NULL::jsonb, NULL::text, NULL::timestamptz, NULL::jsonb, NULL::jsonb,
                NULL::text, NULL::timestamptz, NULL::timestamptz, NULL::timestamptz,
                NULL::text;
        END;
    END LOOP;
END
$$;

-- Enqueue many jobs in one statement and wake the workers listening on the queue's
-- channel.
CREATE FUNCTION enqueue_jobs(p_orders text[], p_now timestamptz, p_channel text)
RETURNS SETOF bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    RETURN QUERY WITH added AS (
        INSERT INTO queue_jobs (order_id, enqueued_at, run_at)
        SELECT o, p_now, p_now FROM unnest(p_orders) WITH ORDINALITY AS u(o, n) ORDER BY n
        RETURNING id)
        SELECT a.id FROM added a ORDER BY a.id;
    IF p_channel IS NOT NULL THEN
        PERFORM pg_notify(p_channel, '');
    END IF;
END
$$;
