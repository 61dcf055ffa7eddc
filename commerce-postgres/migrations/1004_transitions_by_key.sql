-- transition_orders() as in 0996, one order at a time inside the batch: its set-based
-- statements (a join of the orders with the unnested arrays) were planned again on
-- every call, because the arrays change length from batch to batch and the plan cache
-- kept preferring custom plans (pg_stat_statements with track_planning on: 0.5 ms of
-- planning per batch, about as long as their execution), and forcing a generic plan on
-- them made the update slower (3.2x per call in the bench). Each statement here
-- reaches one row by its key and keeps one generic plan per connection. Same signature, same answers; the rows are still locked in id order, and
-- the history rows and events are still written in position order.
CREATE OR REPLACE FUNCTION transition_orders(p_ids text[], p_froms text[], p_tos text[],
                                             p_refs text[], p_reasons text[],
                                             p_events jsonb[], p_now timestamptz)
RETURNS TABLE (o_position int, id text, status text, version bigint, body jsonb,
               payment_ref text, updated_at timestamptz)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    v_len int := coalesce(array_length(p_ids, 1), 0);
    v_n int;
    v_moved boolean[];
    v_status text[];
    v_version bigint[];
    v_body jsonb[];
    v_ref text[];
    v_at timestamptz[];
    v_events jsonb[] := '{}';
    r record;
BEGIN
    IF v_len = 0 THEN
        RETURN;
    END IF;
    v_moved := array_fill(false, ARRAY[v_len]);
    v_status := array_fill(NULL::text, ARRAY[v_len]);
    v_version := array_fill(NULL::bigint, ARRAY[v_len]);
    v_body := array_fill(NULL::jsonb, ARRAY[v_len]);
    v_ref := array_fill(NULL::text, ARRAY[v_len]);
    v_at := array_fill(NULL::timestamptz, ARRAY[v_len]);
    -- compare-and-set in id order (the order every writer of orders locks them in)
    FOR v_n IN SELECT g FROM generate_subscripts(p_ids, 1) AS g
                ORDER BY p_ids[g] COLLATE "C", g LOOP
        UPDATE orders AS o
           SET status = p_tos[v_n], version = o.version + 1,
               updated_at = GREATEST(o.updated_at, p_now),
               payment_ref = COALESCE(p_refs[v_n], o.payment_ref)
         WHERE o.id = p_ids[v_n] AND o.status = p_froms[v_n]
        RETURNING o.status, o.version, o.body, o.payment_ref, o.updated_at INTO r;
        IF FOUND THEN
            v_moved[v_n] := true;
            v_status[v_n] := r.status;
            v_version[v_n] := r.version;
            v_body[v_n] := r.body;
            v_ref[v_n] := r.payment_ref;
            v_at[v_n] := r.updated_at;
        END IF;
    END LOOP;
    -- history, events and answers in position order
    FOR v_n IN 1 .. v_len LOOP
        CONTINUE WHEN NOT v_moved[v_n];
        INSERT INTO order_history (order_id, from_status, to_status, reason, at)
        VALUES (p_ids[v_n], p_froms[v_n], p_tos[v_n], p_reasons[v_n], v_at[v_n]);
        v_events := v_events || p_events[v_n];
        o_position := v_n;
        id := p_ids[v_n];
        status := v_status[v_n];
        version := v_version[v_n];
        body := v_body[v_n];
        payment_ref := v_ref[v_n];
        updated_at := v_at[v_n];
        RETURN NEXT;
    END LOOP;
    IF cardinality(v_events) > 0 THEN
        PERFORM append_events(p_now, v_events, NULL);
    END IF;
END
$$;
