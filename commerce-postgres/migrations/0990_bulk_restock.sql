-- Restocks as one statement for any number of items (InventoryStore::restock and
-- restock_many): each item creates its level and SKU record if needed, fills the SKU's
-- confirmed backorders first, then adds the rest to `available`. Items are applied in
-- (sku, location, position) order, so concurrent batches lock rows in one order; the
-- result carries each item's position. The caller writes the movements and events.
CREATE FUNCTION restock_levels(p_skus text[], p_locations text[], p_quantities bigint[])
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
BEGIN
    FOR r IN
        SELECT t.s, t.l, t.q, t.n::int AS n
          FROM unnest(p_skus, p_locations, p_quantities) WITH ORDINALITY AS t(s, l, q, n)
         ORDER BY t.s COLLATE "C", t.l COLLATE "C", t.n
    LOOP
        -- lock order: the level, then the SKU record (as reserve() takes them)
        INSERT INTO stock_levels AS lv (sku, location) VALUES (r.s, r.l)
            ON CONFLICT (sku, location) DO UPDATE SET received = lv.received;
        INSERT INTO stock_skus AS k (sku) VALUES (r.s)
            ON CONFLICT (sku) DO UPDATE SET sku = EXCLUDED.sku
            RETURNING k.owed INTO v_owed;
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
