-- The usage of a promotion without a total or budget limit (an automatic "5 % off
-- everything", say) is counted by appending rows here rather than by updating the
-- promotion's row: every order of the shop holds such a promotion, and one row updated
-- by every order is a lock that all checkouts would queue on. Nothing is guarded by
-- these counters (there is no limit); usage() adds them to the row's.
CREATE TABLE promotion_usage_deltas (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    promotion_id          text NOT NULL,
    uses                  bigint NOT NULL,
    spent_minor           bigint NOT NULL,
    confirmed_uses        bigint NOT NULL,
    confirmed_spent_minor bigint NOT NULL
);
CREATE INDEX promotion_usage_deltas_promotion ON promotion_usage_deltas (promotion_id);
