-- CatalogStore::skus_on_sale: whether each SKU names a variant of an ACTIVE product,
-- without building the product documents that get_product_by_sku returns (the order
-- pipeline checks every order's lines with it before reserving). Like read_stocks()
-- (1003), one generic plan per connection: an index lookup per SKU in each table.

CREATE FUNCTION skus_on_sale(p_skus text[])
RETURNS TABLE (ord bigint, on_sale boolean)
LANGUAGE plpgsql STABLE
SET search_path FROM CURRENT
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        SELECT k.ord, EXISTS (
                   SELECT 1 FROM variants v JOIN products p ON p.id = v.product_id
                    WHERE v.sku = k.sku COLLATE "C" AND p.status = 'ACTIVE')
          FROM unnest(p_skus) WITH ORDINALITY AS k(sku, ord)
         ORDER BY k.ord;
END
$$;
