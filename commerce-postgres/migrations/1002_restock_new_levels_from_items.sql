-- restock_levels() as in 1001, with a shortcut for the common bulk load: when every
-- level of the batch is new and no SKU owes backorders, the answers are computed from
-- the items (a new level holds its items' units and nothing else, and this
-- transaction holds its row), so the levels are neither updated nor read back. When
-- some levels are new and some are not, the new ones are still not read back. Same
-- signature, same answers, same locks in the same order.
CREATE OR REPLACE FUNCTION restock_levels(p_skus text[], p_locations text[], p_quantities bigint[])
RETURNS TABLE (o_position int, o_sku text, o_location text, o_received bigint,
               o_adjusted bigint, o_available bigint, o_reserved bigint, o_sold bigint,
               o_filled bigint)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    r record;
    v_owed bigint;
    v_fill bigint;
    v_fresh_s text[];
    v_fresh_l text[];
    v_all_fresh boolean;
BEGIN
    -- Lock every level of the batch in (sku, location) order; a level that does not
    -- exist yet is created holding its items' total at once ("fresh").
    WITH totals AS (
        SELECT t.s COLLATE "C" AS s, t.l COLLATE "C" AS l, sum(t.q)::bigint AS q
          FROM unnest(p_skus, p_locations, p_quantities) AS t(s, l, q)
         GROUP BY 1, 2
    ), ins AS (
        INSERT INTO stock_levels AS lv (sku, location, received, available)
        SELECT totals.s, totals.l, totals.q, totals.q FROM totals ORDER BY 1, 2
            ON CONFLICT (sku, location) DO UPDATE SET received = lv.received
        RETURNING lv.sku, lv.location, (lv.xmax = 0) AS fresh
    )
    SELECT coalesce(array_agg(ins.sku) FILTER (WHERE ins.fresh), '{}'),
           coalesce(array_agg(ins.location) FILTER (WHERE ins.fresh), '{}'),
           bool_and(ins.fresh)
      INTO v_fresh_s, v_fresh_l, v_all_fresh FROM ins;
    -- Then every SKU record in sku order.
    WITH locked AS (
        INSERT INTO stock_skus AS k (sku)
        SELECT DISTINCT t.s COLLATE "C" FROM unnest(p_skus) AS t(s) ORDER BY 1
            ON CONFLICT (sku) DO UPDATE SET sku = EXCLUDED.sku
        RETURNING k.owed
    )
    SELECT coalesce(sum(locked.owed), 0) INTO v_owed FROM locked;

    IF v_owed = 0 AND v_all_fresh THEN
        -- every level is new: each item leaves its level holding the units of the
        -- level's items up to and including it
        RETURN QUERY
        SELECT t.n::int, t.s::text, t.l::text, (sum(t.q) OVER w)::bigint, 0::bigint,
               (sum(t.q) OVER w)::bigint, 0::bigint, 0::bigint, 0::bigint
          FROM unnest(p_skus, p_locations, p_quantities) WITH ORDINALITY AS t(s, l, q, n)
        WINDOW w AS (PARTITION BY t.s, t.l ORDER BY t.n)
         ORDER BY t.n;
        RETURN;
    END IF;

    IF v_owed = 0 THEN
        RETURN QUERY
        WITH items AS (
            SELECT t.s COLLATE "C" AS s, t.l COLLATE "C" AS l, t.q, t.n::int AS n
              FROM unnest(p_skus, p_locations, p_quantities) WITH ORDINALITY AS t(s, l, q, n)
        ), fresh AS (
            SELECT f.s COLLATE "C" AS s, f.l COLLATE "C" AS l
              FROM unnest(v_fresh_s, v_fresh_l) AS f(s, l)
        ), totals AS (
            SELECT i.s, i.l, sum(i.q)::bigint AS q FROM items i GROUP BY i.s, i.l
        ), moved AS (
            -- the levels that existed get their totals now
            UPDATE stock_levels AS lv
               SET received = lv.received + totals.q, available = lv.available + totals.q
              FROM totals
             WHERE lv.sku = totals.s AND lv.location = totals.l
               AND NOT EXISTS (SELECT 1 FROM fresh WHERE fresh.s = totals.s AND fresh.l = totals.l)
            RETURNING lv.sku, lv.location, lv.received, lv.adjusted, lv.available,
                      lv.reserved, lv.sold
        ), levels AS (
            SELECT * FROM moved
            UNION ALL
            -- a new level holds its items' total and nothing else
            SELECT totals.s, totals.l, totals.q, 0::bigint, totals.q, 0::bigint, 0::bigint
              FROM totals JOIN fresh ON fresh.s = totals.s AND fresh.l = totals.l
        ), running AS (
            -- units of the same level that later items of the batch add
            SELECT i.n, i.s, i.l,
                   (sum(i.q) OVER (PARTITION BY i.s, i.l)
                    - sum(i.q) OVER (PARTITION BY i.s, i.l ORDER BY i.n))::bigint AS later
              FROM items i
        )
        SELECT run.n, m.sku::text, m.location::text, m.received - run.later, m.adjusted,
               m.available - run.later, m.reserved, m.sold, 0::bigint
          FROM running run JOIN levels m ON m.sku = run.s AND m.location = run.l;
        RETURN;
    END IF;

    -- Some SKU owes backordered units: the fresh levels give their units back and the
    -- items are applied one by one in the order given (every row is locked above),
    -- filling backorders first.
    UPDATE stock_levels AS lv SET received = 0, available = 0
      FROM unnest(v_fresh_s, v_fresh_l) AS f(s, l)
     WHERE lv.sku = f.s AND lv.location = f.l;
    FOR r IN
        SELECT t.s, t.l, t.q, t.n::int AS n
          FROM unnest(p_skus, p_locations, p_quantities) WITH ORDINALITY AS t(s, l, q, n)
         ORDER BY t.n
    LOOP
        SELECT k.owed INTO v_owed FROM stock_skus AS k WHERE k.sku = r.s;
        v_fill := least(v_owed, r.q);
        IF v_fill > 0 THEN
            UPDATE stock_skus AS k SET owed = k.owed - v_fill, backordered = k.backordered - v_fill
             WHERE k.sku = r.s;
        END IF;
        RETURN QUERY
            UPDATE stock_levels AS lv
               SET received = lv.received + r.q, sold = lv.sold + v_fill,
                   available = lv.available + r.q - v_fill
             WHERE lv.sku = r.s AND lv.location = r.l
            RETURNING r.n, lv.sku::text, lv.location::text, lv.received, lv.adjusted,
                      lv.available, lv.reserved, lv.sold, v_fill;
    END LOOP;
END
$$;
