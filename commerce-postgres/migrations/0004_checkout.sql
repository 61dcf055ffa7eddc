-- Fused checkout steps: the same writes as the separate store calls, in one
-- transaction and one round trip each (two commits per order instead of five).

-- create_order + reserve + transition CREATED -> PAYMENT_PENDING.
-- Returns ('created' | 'existing', the order row columns). A short SKU raises from
-- reserve() (CM001 / CM002) and nothing is written.
CREATE FUNCTION place_order(
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
    INSERT INTO order_history (order_id, from_status, to_status, reason, at)
    VALUES (p_id, NULL, 'CREATED', 'created', p_now);
    PERFORM append_events(p_now, ARRAY[p_created_event], NULL);
    PERFORM 1 FROM reserve(p_id, p_skus, p_qtys, p_lines, p_now, p_expires,
                           p_reservation_event, NULL) r
     WHERE r.outcome = 'created';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'order already has a reservation' USING ERRCODE = 'CM003';
    END IF;
    INSERT INTO order_history (order_id, from_status, to_status, reason, at)
    VALUES (p_id, 'CREATED', 'PAYMENT_PENDING', p_reason, p_now);
    PERFORM append_events(p_now, ARRAY[p_pending_event], NULL);
    RETURN QUERY SELECT 'created'::text, o.id, o.customer_id, o.status, o.version, o.body,
        o.payment_ref, o.created_at, o.updated_at FROM orders o WHERE o.id = p_id;
END
$$;

-- confirm (reservation -> sale) + transition PAYMENT_PENDING -> PAYMENT_CONFIRMED.
-- Raises CM004 (DETAIL = current order status, or '' when unknown) if the order is
-- not PAYMENT_PENDING, CM005 (DETAIL = reservation state) if its reservation cannot
-- be confirmed; nothing is written then.
CREATE FUNCTION complete_payment(
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
        PERFORM append_events(p_now, ARRAY[jsonb_build_object(
            'type', 'reservation_changed', 'order_id', p_order, 'state', 'CONFIRMED',
            'skus', (SELECT jsonb_agg(l->>'sku' ORDER BY n)
                       FROM jsonb_array_elements(v_lines) WITH ORDINALITY AS t(l, n)))], NULL);
    END IF;
    INSERT INTO order_history (order_id, from_status, to_status, reason, at)
    VALUES (p_order, 'PAYMENT_PENDING', 'PAYMENT_CONFIRMED', p_reason, v_at);
    PERFORM append_events(p_now, ARRAY[p_paid_event], NULL);
    RETURN QUERY SELECT o.id, o.customer_id, o.status, o.version, o.body, o.payment_ref,
        o.created_at, o.updated_at FROM orders o WHERE o.id = p_order;
END
$$;
