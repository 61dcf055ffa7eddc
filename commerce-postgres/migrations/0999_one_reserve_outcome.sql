-- One out-of-stock protocol. reserve() (0001, 0006) stays the only body of the
-- reservation logic and still raises CM001 (out of stock) / CM002 (unknown SKU): the
-- raise is what rolls its partial writes back. try_reserve() is the one place that
-- catches them: it runs reserve() in a subtransaction and answers with an outcome row,
-- which is what every caller now reads (PgInventory::reserve, the hot-SKU combiner's
-- reserve_batch() and the pipeline's step_reserve_order()). Nothing else catches CM001
-- or CM002, and the adapter maps the row to OutOfStock / NotFound in one function
-- (commerce-postgres/src/inventory/outcome.rs).

-- reserve() as an outcome row: outcome 'created' | 'existing' (with the reservation)
-- | 'out_of_stock' (sku, requested, available: the first short SKU) | 'unknown_sku'
-- (sku). A refused reservation writes nothing.
CREATE FUNCTION try_reserve(
    p_order text, p_skus text[], p_qtys bigint[], p_lines jsonb,
    p_now timestamptz, p_expires timestamptz, p_event jsonb, p_channel text)
RETURNS TABLE (outcome text, lines jsonb, allocations jsonb, state text,
               created_at timestamptz, expires_at timestamptz, closed_at timestamptz,
               reason text, sku text, requested bigint, available bigint)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    v_detail text;
BEGIN
    RETURN QUERY SELECT r.outcome, r.lines, r.allocations, r.state, r.created_at,
        r.expires_at, r.closed_at, r.reason, NULL::text, NULL::bigint, NULL::bigint
      FROM reserve(p_order, p_skus, p_qtys, p_lines, p_now, p_expires, p_event, p_channel) r;
EXCEPTION
    WHEN SQLSTATE 'CM001' THEN
        GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL;
        RETURN QUERY SELECT 'out_of_stock'::text, NULL::jsonb, NULL::jsonb, NULL::text,
            NULL::timestamptz, NULL::timestamptz, NULL::timestamptz, NULL::text,
            v_detail::jsonb->>'sku', (v_detail::jsonb->>'requested')::bigint,
            (v_detail::jsonb->>'available')::bigint;
    WHEN SQLSTATE 'CM002' THEN
        GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL;
        RETURN QUERY SELECT 'unknown_sku'::text, NULL::jsonb, NULL::jsonb, NULL::text,
            NULL::timestamptz, NULL::timestamptz, NULL::timestamptz, NULL::text,
            v_detail, NULL::bigint, NULL::bigint;
END
$$;

-- The hot-SKU combiner's statement: one try_reserve() per request, in array order, one
-- row per request with try_reserve()'s columns (the return type grows by sku and
-- requested, hence DROP and CREATE; the arguments are unchanged).
DROP FUNCTION reserve_batch(text[], text, bigint[], jsonb[], timestamptz, timestamptz[],
                            jsonb[], text);
CREATE FUNCTION reserve_batch(
    p_orders text[], p_sku text, p_qtys bigint[], p_lines jsonb[],
    p_now timestamptz, p_expires timestamptz[], p_events jsonb[], p_channel text)
RETURNS TABLE (order_id text, outcome text, lines jsonb, allocations jsonb, state text,
               created_at timestamptz, expires_at timestamptz, closed_at timestamptz,
               reason text, sku text, requested bigint, available bigint)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    i int;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_orders, 1), 0) LOOP
        RETURN QUERY SELECT p_orders[i], r.outcome, r.lines, r.allocations, r.state,
            r.created_at, r.expires_at, r.closed_at, r.reason, r.sku, r.requested, r.available
          FROM try_reserve(p_orders[i], ARRAY[p_sku], ARRAY[p_qtys[i]], p_lines[i], p_now,
                           p_expires[i], p_events[i], p_channel) r;
    END LOOP;
END
$$;

-- OrderSteps::reserve_order for one order, as in 0010 but reading try_reserve()'s
-- outcome instead of catching reserve()'s SQLSTATEs (same order reasons, same writes).
-- p_req: {"skus": [...], "qtys": [...], "lines": <normalised lines>,
-- "reservation_event", "pending_event", "cancel_event"}.
-- Raises CM006 (unknown order), CM004 (DETAIL = status; not CREATED), CM003 (a
-- different reservation exists), CM007 (DETAIL = reservation state; inconsistent).
CREATE OR REPLACE FUNCTION step_reserve_order(p_order text, p_req jsonb, p_now timestamptz,
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
    SELECT * INTO v_res FROM try_reserve(p_order, v_skus, v_qtys, p_req->'lines', p_now,
                                         p_expires, NULL, NULL);
    IF v_res.outcome = 'out_of_stock' THEN
        v_reason := format('out of stock: %s (requested %s, available %s)',
            v_res.sku, v_res.requested, v_res.available);
    ELSIF v_res.outcome = 'unknown_sku' THEN
        v_reason := format('out of stock: %s is not stocked', v_res.sku);
    END IF;
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
