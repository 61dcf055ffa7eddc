-- PromotionStore::reserve in one round trip: the same writes, in the same lock order
-- (redemption, promotions by id, codes by code, customer uses by key), each limit still
-- one guarded statement, all in the statement's transaction. The checks that do not
-- depend on usage (promotions and codes are immutable) are the caller's, before the
-- call. A refusal raises SQLSTATE CM010 with DETAIL {"promotion": id, "reason": r} and
-- rolls everything back.
--
-- p_promotions / p_amounts / p_limited / p_per_customer: one entry per line, in
-- promotion id order (p_limited: the promotion has a total or budget limit, so its row
-- is guarded; otherwise its use is an appended delta row). p_codes / p_code_promotions:
-- the single-use codes to hold, in code order.
CREATE FUNCTION reserve_redemption(
    p_order text, p_customer text, p_currency text, p_total bigint, p_lines jsonb,
    p_expires timestamptz, p_now timestamptz,
    p_promotions text[], p_amounts bigint[], p_limited boolean[], p_per_customer bigint[],
    p_codes text[], p_code_promotions text[])
RETURNS TABLE (o_outcome text, order_id text, customer_id text, currency text,
               order_total_minor bigint, lines jsonb, state text, reason text,
               expires_at timestamptz)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    i int;
    v_full boolean;
BEGIN
    INSERT INTO promotion_redemptions AS r (order_id, customer_id, currency, order_total_minor,
                                            lines, state, expires_at, created_at, updated_at)
    VALUES (p_order, p_customer, p_currency, p_total, p_lines, 'active', p_expires, p_now, p_now)
    ON CONFLICT (order_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY
            SELECT 'existing'::text, r.order_id, r.customer_id, r.currency, r.order_total_minor,
                   r.lines, r.state, r.reason, r.expires_at
              FROM promotion_redemptions AS r WHERE r.order_id = p_order;
        RETURN;
    END IF;
    FOR i IN 1 .. coalesce(array_length(p_promotions, 1), 0) LOOP
        CONTINUE WHEN NOT p_limited[i];
        UPDATE promotions AS p SET uses = p.uses + 1, spent_minor = p.spent_minor + p_amounts[i]
         WHERE p.id = p_promotions[i]
           AND (p.total_limit IS NULL OR p.uses < p.total_limit)
           AND (p.budget_minor IS NULL OR p.spent_minor + p_amounts[i] <= p.budget_minor);
        IF NOT FOUND THEN
            SELECT p.total_limit IS NOT NULL AND p.uses >= p.total_limit INTO v_full
              FROM promotions AS p WHERE p.id = p_promotions[i];
            RAISE EXCEPTION 'promotion unavailable' USING ERRCODE = 'CM010',
                DETAIL = jsonb_build_object('promotion', p_promotions[i],
                    'reason', CASE WHEN v_full THEN 'total_uses' ELSE 'budget' END)::text;
        END IF;
    END LOOP;
    INSERT INTO promotion_usage_deltas (promotion_id, uses, spent_minor, confirmed_uses,
                                        confirmed_spent_minor)
    SELECT u.id, 1, u.amount, 0, 0
      FROM unnest(p_promotions, p_amounts, p_limited) AS u(id, amount, limited)
     WHERE NOT u.limited;
    FOR i IN 1 .. coalesce(array_length(p_codes, 1), 0) LOOP
        UPDATE promotion_codes AS c SET holder = p_order
         WHERE c.code = p_codes[i] AND c.holder IS NULL;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'promotion unavailable' USING ERRCODE = 'CM010',
                DETAIL = jsonb_build_object('promotion', p_code_promotions[i],
                                            'reason', 'code_used')::text;
        END IF;
    END LOOP;
    IF p_customer IS NOT NULL THEN
        FOR i IN 1 .. coalesce(array_length(p_promotions, 1), 0) LOOP
            INSERT INTO promotion_customer_uses AS u (promotion_id, customer_id, uses)
            VALUES (p_promotions[i], p_customer, 1)
            ON CONFLICT (promotion_id, customer_id)
            DO UPDATE SET uses = u.uses + 1
             WHERE p_per_customer[i] IS NULL OR u.uses < p_per_customer[i];
            IF NOT FOUND THEN
                RAISE EXCEPTION 'promotion unavailable' USING ERRCODE = 'CM010',
                    DETAIL = jsonb_build_object('promotion', p_promotions[i],
                                                'reason', 'customer_uses')::text;
            END IF;
        END LOOP;
    END IF;
    RETURN QUERY SELECT 'created'::text, p_order, p_customer, p_currency, p_total, p_lines,
                        'active'::text, NULL::text, p_expires;
END
$$;
