-- PromotionStore::reserve, grouped: the reserves that arrive while one is in flight run
-- together, one statement and one commit for all of them. Each order runs the same
-- reserve_redemption() (migration 0998) in its own subtransaction, so a refusal
-- (SQLSTATE CM010) or any other error rolls back that order's writes only and comes
-- back as its row (outcome 'error', with the SQLSTATE and DETAIL); its neighbours keep
-- theirs.
--
-- p_reqs: one object per order: {"order", "customer", "currency", "total", "lines",
-- "expires", "promotions", "amounts", "limited", "per_customer", "codes",
-- "code_promotions"}, the arguments of reserve_redemption() (arrays as JSON arrays).
CREATE FUNCTION reserve_redemptions(p_reqs jsonb[], p_now timestamptz)
RETURNS TABLE (n int, o_outcome text, code text, detail text, order_id text,
               customer_id text, currency text, order_total_minor bigint, lines jsonb,
               state text, reason text, expires_at timestamptz)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    i int;
    r jsonb;
    v_code text;
    v_detail text;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_reqs, 1), 0) LOOP
        r := p_reqs[i];
        BEGIN
            RETURN QUERY SELECT i, s.o_outcome, NULL::text, NULL::text, s.order_id,
                s.customer_id, s.currency, s.order_total_minor, s.lines, s.state, s.reason,
                s.expires_at
              FROM reserve_redemption(
                  r->>'order', r->>'customer', r->>'currency', (r->>'total')::bigint,
                  r->'lines', (r->>'expires')::timestamptz, p_now,
                  ARRAY(SELECT x FROM jsonb_array_elements_text(r->'promotions')
                        WITH ORDINALITY AS e(x, k) ORDER BY k),
                  ARRAY(SELECT x::bigint FROM jsonb_array_elements_text(r->'amounts')
                        WITH ORDINALITY AS e(x, k) ORDER BY k),
                  ARRAY(SELECT x::boolean FROM jsonb_array_elements_text(r->'limited')
                        WITH ORDINALITY AS e(x, k) ORDER BY k),
                  ARRAY(SELECT x::bigint FROM jsonb_array_elements_text(r->'per_customer')
                        WITH ORDINALITY AS e(x, k) ORDER BY k),
                  ARRAY(SELECT x FROM jsonb_array_elements_text(r->'codes')
                        WITH ORDINALITY AS e(x, k) ORDER BY k),
                  ARRAY(SELECT x FROM jsonb_array_elements_text(r->'code_promotions')
                        WITH ORDINALITY AS e(x, k) ORDER BY k)) s;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_code = RETURNED_SQLSTATE, v_detail = PG_EXCEPTION_DETAIL;
            RETURN QUERY SELECT i, 'error'::text, v_code, v_detail, NULL::text, NULL::text,
                NULL::text, NULL::bigint, NULL::jsonb, NULL::text, NULL::text,
                NULL::timestamptz;
        END;
    END LOOP;
END
$$;
