-- Group commit for the order store: many orders' creations, or many orders' status
-- changes, in one statement and one commit, each order with its own decision.

-- append_events() as one INSERT for any number of events (ids still drawn in array
-- order under the same shared advisory lock).
CREATE OR REPLACE FUNCTION append_events(p_at timestamptz, p_payloads jsonb[], p_channel text)
RETURNS SETOF bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1668246881, hashtext(current_schema()));
    RETURN QUERY
        INSERT INTO events (id, at, payload)
        SELECT nextval('event_ids'), p_at, p.payload
          FROM unnest(p_payloads) WITH ORDINALITY AS p(payload, n)
        RETURNING events.id;
    IF p_channel IS NOT NULL THEN
        PERFORM pg_notify(p_channel, '');
    END IF;
END
$$;

-- Creates the orders that are new (a row whose id or idempotency key exists is
-- skipped), each with its 'created' history row and its event (p_events[n]), and
-- returns the positions of the ones it created. The caller looks at the others.
CREATE FUNCTION create_orders(p_ids text[], p_customers text[], p_keys text[],
                              p_statuses text[], p_versions bigint[], p_bodies jsonb[],
                              p_created timestamptz[], p_events jsonb[])
RETURNS TABLE (o_position int)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    v_made int[];
BEGIN
    WITH made AS (
        INSERT INTO orders AS o (id, customer_id, idempotency_key, status, version, body,
                                 payment_ref, created_at, updated_at)
        SELECT u.id, u.customer, u.key, u.status, u.version, u.body, NULL, u.at, u.at
          FROM unnest(p_ids, p_customers, p_keys, p_statuses, p_versions, p_bodies, p_created)
               WITH ORDINALITY AS u(id, customer, key, status, version, body, at, n)
         ORDER BY u.n
            ON CONFLICT DO NOTHING
        RETURNING o.id, o.idempotency_key
    )
    -- a position was created only if its row holds both its id and its key (another
    -- position may share one of them and have been skipped)
    SELECT coalesce(array_agg(u.n::int ORDER BY u.n), '{}') INTO v_made
      FROM made JOIN unnest(p_ids, p_keys) WITH ORDINALITY AS u(id, key, n)
        ON u.id = made.id AND u.key = made.idempotency_key;
    IF cardinality(v_made) = 0 THEN
        RETURN;
    END IF;
    INSERT INTO order_history (order_id, from_status, to_status, reason, at)
    SELECT p_ids[m.n], NULL, p_statuses[m.n], 'created', p_created[m.n]
      FROM unnest(v_made) WITH ORDINALITY AS m(n, k)
     ORDER BY m.k;
    -- each event at its order's creation time, ids in position order (as append_events)
    PERFORM pg_advisory_xact_lock_shared(1668246881, hashtext(current_schema()));
    INSERT INTO events (id, at, payload)
    SELECT nextval('event_ids'), p_created[m.n], p_events[m.n]
      FROM unnest(v_made) WITH ORDINALITY AS m(n, k);
    RETURN QUERY SELECT m.n FROM unnest(v_made) AS m(n);
END
$$;

-- Compare-and-set status changes: order p_ids[i] moves from p_froms[i] to p_tos[i]
-- (payment_ref set when p_refs[i] is not NULL) if it is still in p_froms[i], with its
-- history row and its event (p_events[i]). Rows are locked in id order. An id must
-- appear at most once per call. Returns the moved orders with their positions.
CREATE FUNCTION transition_orders(p_ids text[], p_froms text[], p_tos text[], p_refs text[],
                                  p_reasons text[], p_events jsonb[], p_now timestamptz)
RETURNS TABLE (o_position int, id text, status text, version bigint, body jsonb,
               payment_ref text, updated_at timestamptz)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    v_moved int[];
BEGIN
    PERFORM 1 FROM orders AS o WHERE o.id = ANY (p_ids) ORDER BY o.id FOR UPDATE;
    WITH c AS (
        SELECT u.id COLLATE "C" AS id, u.f, u.t, u.ref, u.n::int AS n
          FROM unnest(p_ids, p_froms, p_tos, p_refs) WITH ORDINALITY AS u(id, f, t, ref, n)
    ), moved AS (
        UPDATE orders AS o
           SET status = c.t, version = o.version + 1,
               updated_at = GREATEST(o.updated_at, p_now),
               payment_ref = COALESCE(c.ref, o.payment_ref)
          FROM c
         WHERE o.id = c.id AND o.status = c.f
        RETURNING c.n
    )
    SELECT coalesce(array_agg(moved.n ORDER BY moved.n), '{}') INTO v_moved FROM moved;
    IF cardinality(v_moved) = 0 THEN
        RETURN;
    END IF;
    INSERT INTO order_history (order_id, from_status, to_status, reason, at)
    SELECT o.id, p_froms[m.n], p_tos[m.n], p_reasons[m.n], o.updated_at
      FROM unnest(v_moved) AS m(n) JOIN orders AS o ON o.id = p_ids[m.n]
     ORDER BY m.n;
    PERFORM append_events(p_now, ARRAY(SELECT p_events[m.n] FROM unnest(v_moved) AS m(n) ORDER BY m.n),
                          NULL);
    RETURN QUERY
        SELECT m.n, o.id::text, o.status, o.version, o.body, o.payment_ref, o.updated_at
          FROM unnest(v_moved) AS m(n) JOIN orders AS o ON o.id = p_ids[m.n];
END
$$;
