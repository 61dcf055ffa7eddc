//! Promotions, coupon codes and redemptions on PostgreSQL: [`PgPromotions`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use commerce_core::clock::{self, Timestamp};
use commerce_core::id::{CustomerId, OrderId, PromotionId};
use commerce_core::money::{Currency, Money};
use commerce_core::promotion::{
    CodeBatch, CodeLookup, CouponCode, MAX_CODES, Offer, Promotion, PromotionUsage, Redemption,
    RedemptionLine, RedemptionRequest, RedemptionState, Trigger, Unavailable, check_line,
    check_reason, check_ttl,
};
use commerce_core::store::{PromotionStore, check_limit};
use commerce_core::{EntityKind, Error, Result};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use tracing::instrument;

use crate::batch::{Batcher, RunBatch};
use crate::db::Db;
use crate::error::{DbResult, code, corrupt};

/// The [`PromotionStore`] on PostgreSQL (tables from `migrations/0930_promotions.sql`).
///
/// * Each limit is **one guarded statement** on the row that carries it, inside the
///   reservation's transaction: `UPDATE promotions SET uses = uses + 1, spent_minor =
///   spent_minor + $amount WHERE id = $1 AND (total_limit IS NULL OR uses <
///   total_limit) AND (budget_minor IS NULL OR spent_minor + $amount <= budget_minor)`;
///   `UPDATE promotion_codes SET holder = $order WHERE code = $1 AND holder IS NULL`;
///   an upsert of `promotion_customer_uses` whose `DO UPDATE ... WHERE uses < $limit`
///   refuses the extra use. A statement that matches no row is the refusal, and the
///   whole transaction rolls back. Nothing is decided on a value read earlier.
/// * A promotion with neither a total nor a budget limit has nothing to guard: its
///   usage is counted by appending rows to `promotion_usage_deltas` (summed by
///   [`usage`](PromotionStore::usage)), so the orders holding an automatic promotion
///   never queue on its row's lock.
/// * `reserve` is **one round trip, grouped**: the plpgsql function
///   `reserve_redemption()` (migration `0998`) inserts the redemption and runs the
///   guarded statements; a refusal raises SQLSTATE `CM010` and rolls all of it back.
///   Concurrent reserves go together (`reserve_redemptions()`, migration `1000`): the
///   ones that arrive while a batch is in flight run as the next one, one statement and
///   one durable commit for all, each order in its own subtransaction, so a refusal or
///   error rolls back that order only. The checks that do not depend on usage run
///   before, on promotions and codes read once per process (both are immutable once
///   stored).
/// * `confirm` is grouped the same way: one guarded `UPDATE ... WHERE order_id =
///   ANY(..) AND state = 'active'` decides for every order of the batch, the confirmed
///   uses are counted once per promotion, one commit.
/// * Idempotency per order: the redemption row is inserted first with `ON CONFLICT DO
///   NOTHING`; a concurrent second reserve of the same order waits for the first and
///   then finds its row.
/// * Locks are taken in one order within each order's writes (redemption, promotions
///   by id, codes by code, customer uses by key). A batch keeps the locks of its
///   earlier orders until it commits, so two batches holding orders of the same
///   customer can still deadlock; PostgreSQL then fails one of those orders with a
///   retryable error (its neighbours commit) and the caller retries it.
/// * `release_expired` claims due redemptions with `UPDATE ... WHERE order_id IN (SELECT
///   ... FOR UPDATE SKIP LOCKED) AND state = 'active' RETURNING`, so concurrent reapers
///   never claim the same one, and gives back what they held in the same transaction.
#[derive(Debug, Clone)]
pub struct PgPromotions {
    db: Arc<Db>,
    known: Arc<Known>,
    reserves: Arc<Batcher<serde_json::Value, (String, Redemption)>>,
    confirms: Arc<Batcher<OrderId, Redemption>>,
}

/// Promotions and codes already read. Both are immutable once stored (the contract has
/// no update or delete), so what was read never goes stale; a code not found is not
/// remembered (it may be added later).
#[derive(Default)]
struct Known {
    promotions: std::sync::RwLock<HashMap<PromotionId, Promotion>>,
    codes: std::sync::RwLock<HashMap<CouponCode, (PromotionId, bool)>>,
}

/// The most codes [`Known`] remembers (unique-code batches can hold millions); past it
/// the memory starts over.
const MAX_KNOWN_CODES: usize = 100_000;

impl std::fmt::Debug for Known {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Known").finish_non_exhaustive()
    }
}

const REDEMPTION_COLUMNS: &str =
    "order_id, customer_id, currency, order_total_minor, lines, state, reason, expires_at";

fn redemption_from(row: &PgRow) -> Result<Redemption> {
    let currency = Currency::parse(&row.try_get::<String, _>("currency").db()?)
        .map_err(|e| corrupt(format!("redemption currency: {e}")))?;
    let lines: serde_json::Value = row.try_get("lines").db()?;
    let lines: Vec<RedemptionLine> =
        serde_json::from_value(lines).map_err(|e| corrupt(format!("redemption lines: {e}")))?;
    let state: String = row.try_get("state").db()?;
    Ok(Redemption {
        order_id: OrderId::new(row.try_get::<String, _>("order_id").db()?)
            .map_err(|e| corrupt(format!("order id: {e}")))?,
        customer_id: row
            .try_get::<Option<String>, _>("customer_id")
            .db()?
            .map(CustomerId::new)
            .transpose()
            .map_err(|e| corrupt(format!("customer id: {e}")))?,
        order_total: Money::from_minor_units(row.try_get("order_total_minor").db()?, currency)
            .map_err(|e| corrupt(format!("order total: {e}")))?,
        lines,
        state: RedemptionState::parse(&state)
            .ok_or_else(|| corrupt(format!("redemption state {state:?}")))?,
        expires_at: row.try_get("expires_at").db()?,
        reason: row.try_get("reason").db()?,
    })
}

fn promotion_from(row: &PgRow) -> Result<Promotion> {
    let body: serde_json::Value = row.try_get("body").db()?;
    serde_json::from_value(body).map_err(|e| corrupt(format!("promotion body: {e}")))
}

fn cut(text: &str) -> String {
    text.chars().take(64).collect()
}

/// Truncates a timestamp to the microseconds PostgreSQL stores.
fn micros(t: Timestamp) -> Timestamp {
    chrono::DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

impl PgPromotions {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        let batching = db.batching;
        // The grouped reserves get connections of their own, as the order steps do: a
        // batch carries many orders and must not queue behind single-order reads.
        let lanes = u32::try_from(batching.lanes).unwrap_or(64);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(lanes * 2)
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy_with((*db.pool.connect_options()).clone());
        let sql = format!(
            "SELECT * FROM {}($1, $2) ORDER BY n",
            db.qualified("reserve_redemptions")
        );
        let (batch_db, reserve_pool) = (db.clone(), pool.clone());
        let run: RunBatch<serde_json::Value, (String, Redemption)> = Arc::new(move |batch| {
            let (db, pool, sql) = (batch_db.clone(), reserve_pool.clone(), sql.clone());
            Box::pin(async move {
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(&batch)
                    .bind(db.now())
                    .fetch_all(&pool)
                    .await
                    .db()?;
                if rows.len() != batch.len() {
                    let fail = crate::batch::shared_failure(corrupt(format!(
                        "a redemption batch of {} returned {} rows",
                        batch.len(),
                        rows.len()
                    )));
                    return Ok(batch.iter().map(|_| Err(fail())).collect());
                }
                Ok(rows.iter().map(reserved_row).collect())
            })
        });
        let confirm_db = db.clone();
        let run_confirm: RunBatch<OrderId, Redemption> = Arc::new(move |batch| {
            let (db, pool) = (confirm_db.clone(), pool.clone());
            Box::pin(async move { confirm_batch(&db, &pool, &batch).await })
        });
        PgPromotions {
            db,
            known: Arc::new(Known::default()),
            reserves: Batcher::new(batching.lanes, batching.max_batch, run),
            confirms: Batcher::new(batching.lanes, batching.max_batch, run_confirm),
        }
    }

    /// The promotions of `ids` that exist, read once per process.
    async fn promotions_by_id(
        &self,
        ids: &[&PromotionId],
    ) -> Result<HashMap<PromotionId, Promotion>> {
        let mut found = HashMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        {
            let known = self
                .known
                .promotions
                .read()
                .unwrap_or_else(|e| e.into_inner());
            for id in ids {
                match known.get(*id) {
                    Some(p) => {
                        found.insert((*id).clone(), p.clone());
                    }
                    None => missing.push(id.as_str()),
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let rows = sqlx::query(sql!(
            "SELECT body FROM {} WHERE id = ANY($1)",
            self.qualified("promotions")
        ))
        .bind(&missing)
        .fetch_all(&self.db.pool)
        .await
        .db()?;
        let mut known = self
            .known
            .promotions
            .write()
            .unwrap_or_else(|e| e.into_inner());
        for r in &rows {
            let p = promotion_from(r)?;
            known.insert(p.id.clone(), p.clone());
            found.insert(p.id.clone(), p);
        }
        Ok(found)
    }

    /// The owner and single-use flag of each of `codes` that exists.
    async fn codes_by_code(
        &self,
        codes: &[&CouponCode],
    ) -> Result<HashMap<CouponCode, (PromotionId, bool)>> {
        let mut found = HashMap::with_capacity(codes.len());
        let mut missing = Vec::new();
        {
            let known = self.known.codes.read().unwrap_or_else(|e| e.into_inner());
            for c in codes {
                match known.get(*c) {
                    Some(v) => {
                        found.insert((*c).clone(), v.clone());
                    }
                    None => missing.push(c.as_str()),
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let rows = sqlx::query(sql!(
            "SELECT code, promotion_id, single_use FROM {} WHERE code = ANY($1)",
            self.qualified("promotion_codes")
        ))
        .bind(&missing)
        .fetch_all(&self.db.pool)
        .await
        .db()?;
        let mut known = self.known.codes.write().unwrap_or_else(|e| e.into_inner());
        if known.len() + rows.len() > MAX_KNOWN_CODES {
            known.clear();
        }
        for r in &rows {
            let code = CouponCode::parse(&r.try_get::<String, _>("code").db()?)
                .map_err(|e| corrupt(format!("code: {e}")))?;
            let owner = PromotionId::new(r.try_get::<String, _>("promotion_id").db()?)
                .map_err(|e| corrupt(format!("promotion id: {e}")))?;
            let single: bool = r.try_get("single_use").db()?;
            known.insert(code.clone(), (owner.clone(), single));
            found.insert(code, (owner, single));
        }
        Ok(found)
    }

    /// The answer to a reserve whose order already holds `existing`: the same request
    /// gets it again, another is a conflict.
    fn existing_answer(
        existing: Redemption,
        request: &RedemptionRequest,
        lines: &[RedemptionLine],
    ) -> Result<Redemption> {
        if existing.same_request(&request.customer_id, &request.order_total, lines) {
            return Ok(existing);
        }
        Err(Error::conflict(
            EntityKind::Redemption,
            format!("order {} already holds other promotions", request.order_id),
        ))
    }

    fn qualified(&self, name: &str) -> String {
        self.db.qualified(name)
    }

    const EXHAUSTED: &'static str = "((p.total_limit IS NOT NULL AND p.uses >= p.total_limit) \
         OR (p.budget_minor IS NOT NULL AND p.spent_minor >= p.budget_minor))";

    async fn read_redemption(
        &self,
        conn: &mut PgConnection,
        order_id: &OrderId,
    ) -> Result<Option<Redemption>> {
        let row = sqlx::query(sql!(
            "SELECT {REDEMPTION_COLUMNS} FROM {} WHERE order_id = $1",
            self.qualified("promotion_redemptions")
        ))
        .bind(order_id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .db()?;
        row.as_ref().map(redemption_from).transpose()
    }

    /// Gives back what `released` (redemptions just moved from active to released)
    /// held, locking promotions by id, then codes, then customer uses.
    async fn give_back(&self, conn: &mut PgConnection, released: &[Redemption]) -> Result<()> {
        let mut per_promotion: BTreeMap<&PromotionId, (i64, i64)> = BTreeMap::new();
        let mut codes: BTreeMap<&CouponCode, &OrderId> = BTreeMap::new();
        let mut customers: BTreeMap<(&PromotionId, &CustomerId), i64> = BTreeMap::new();
        for r in released {
            for l in &r.lines {
                let e = per_promotion.entry(&l.promotion_id).or_default();
                e.0 += 1;
                e.1 += l.amount.to_minor_units();
                if let Some(c) = &l.code {
                    codes.insert(c, &r.order_id);
                }
                if let Some(c) = &r.customer_id {
                    *customers.entry((&l.promotion_id, c)).or_default() += 1;
                }
            }
        }
        for (id, (uses, spent)) in per_promotion {
            count_usage(&self.db, conn, id, -uses, -spent, 0, 0).await?;
        }
        for (code, order) in codes {
            sqlx::query(sql!(
                "UPDATE {} SET holder = NULL WHERE code = $1 AND holder = $2",
                self.qualified("promotion_codes")
            ))
            .bind(code.as_str())
            .bind(order.as_str())
            .execute(&mut *conn)
            .await
            .db()?;
        }
        for ((promotion, customer), n) in customers {
            sqlx::query(sql!(
                "UPDATE {} SET uses = uses - $3 WHERE promotion_id = $1 AND customer_id = $2",
                self.qualified("promotion_customer_uses")
            ))
            .bind(promotion.as_str())
            .bind(customer.as_str())
            .bind(n)
            .execute(&mut *conn)
            .await
            .db()?;
        }
        Ok(())
    }

    /// Classifies why `order_id` could not move from active to `to`.
    async fn not_active(
        &self,
        conn: &mut PgConnection,
        order_id: &OrderId,
        to: RedemptionState,
    ) -> Result<Redemption> {
        let r = self.read_redemption(conn, order_id).await?;
        Self::settled(r, order_id, to)
    }

    /// The answer for a redemption found not active: itself when it is already in `to`
    /// (a retry), `NotFound` or `InvalidTransition` otherwise.
    fn settled(
        r: Option<Redemption>,
        order_id: &OrderId,
        to: RedemptionState,
    ) -> Result<Redemption> {
        let r = r.ok_or_else(|| Error::not_found(EntityKind::Redemption, order_id))?;
        if r.state == to {
            return Ok(r);
        }
        Err(Error::invalid_transition(
            EntityKind::Redemption,
            r.state,
            to,
        ))
    }
}

#[async_trait]
impl PromotionStore for PgPromotions {
    #[instrument(skip_all, fields(promotion = %promotion.id))]
    async fn create_promotion(&self, promotion: &Promotion) -> Result<Promotion> {
        let now = self.db.now();
        promotion.validate_at(now)?;
        let body =
            serde_json::to_value(promotion).map_err(|e| Error::permanent("encode promotion", e))?;
        let mut tx = self.db.pool.begin().await.db()?;
        let inserted = sqlx::query(sql!(
            "INSERT INTO {} (id, body, currency, automatic, starts_at, ends_at, total_limit,
                             per_customer_limit, budget_minor, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (id) DO NOTHING",
            self.qualified("promotions")
        ))
        .bind(promotion.id.as_str())
        .bind(&body)
        .bind(promotion.currency.code())
        .bind(promotion.trigger == Trigger::Automatic)
        .bind(promotion.starts_at)
        .bind(promotion.ends_at)
        .bind(
            promotion
                .limits
                .total_uses
                .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
        )
        .bind(promotion.limits.uses_per_customer.map(i64::from))
        .bind(promotion.limits.budget.map(|b| b.to_minor_units()))
        .bind(now)
        .execute(&mut *tx)
        .await
        .db()?;
        if inserted.rows_affected() == 1 {
            tx.commit().await.db()?;
            return Ok(promotion.clone());
        }
        let row = sqlx::query(sql!(
            "SELECT body FROM {} WHERE id = $1",
            self.qualified("promotions")
        ))
        .bind(promotion.id.as_str())
        .fetch_one(&mut *tx)
        .await
        .db()?;
        let existing = promotion_from(&row)?;
        if &existing == promotion {
            Ok(existing)
        } else {
            Err(Error::conflict(
                EntityKind::Promotion,
                format!("promotion {} exists with another definition", promotion.id),
            ))
        }
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn promotion(&self, id: &PromotionId) -> Result<Option<Promotion>> {
        let row = sqlx::query(sql!(
            "SELECT body FROM {} WHERE id = $1",
            self.qualified("promotions")
        ))
        .bind(id.as_str())
        .fetch_optional(&self.db.pool)
        .await
        .db()?;
        row.as_ref().map(promotion_from).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn automatic_offers(&self, now: Timestamp) -> Result<Vec<Offer>> {
        let rows = sqlx::query(sql!(
            "SELECT p.id, {exhausted} AS exhausted FROM {t} p
             WHERE p.automatic
               AND (p.starts_at IS NULL OR p.starts_at <= $1)
               AND (p.ends_at IS NULL OR p.ends_at > $1)
             ORDER BY p.id COLLATE \"C\"",
            exhausted = Self::EXHAUSTED,
            t = self.qualified("promotions")
        ))
        .bind(now)
        .fetch_all(&self.db.pool)
        .await
        .db()?;
        // Only the usage is read each time; the bodies (immutable) come from memory.
        let listed = rows
            .iter()
            .map(|r| {
                let id = PromotionId::new(r.try_get::<String, _>("id").db()?)
                    .map_err(|e| corrupt(format!("promotion id: {e}")))?;
                Ok((id, r.try_get::<bool, _>("exhausted").db()?))
            })
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<&PromotionId> = listed.iter().map(|(id, _)| id).collect();
        let mut bodies = self.promotions_by_id(&ids).await?;
        Ok(listed
            .iter()
            .filter_map(|(id, exhausted)| {
                // A promotion is never deleted, so every listed one has a body.
                bodies.remove(id).map(|promotion| Offer {
                    promotion,
                    exhausted: *exhausted,
                })
            })
            .collect())
    }

    #[instrument(skip_all, fields(promotion = %promotion_id, codes = batch.codes.len()))]
    async fn add_codes(&self, promotion_id: &PromotionId, batch: &CodeBatch) -> Result<u64> {
        batch.validate()?;
        let mut tx = self.db.pool.begin().await.db()?;
        let automatic: Option<bool> = sqlx::query_scalar(sql!(
            "SELECT automatic FROM {} WHERE id = $1",
            self.qualified("promotions")
        ))
        .bind(promotion_id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        match automatic {
            None => return Err(Error::not_found(EntityKind::Promotion, promotion_id)),
            Some(true) => {
                return Err(Error::validation(
                    "promotion_id",
                    format!("promotion {promotion_id} is automatic and takes no codes"),
                ));
            }
            Some(false) => {}
        }
        let mut codes: Vec<&str> = batch.codes.iter().map(CouponCode::as_str).collect();
        codes.sort_unstable();
        let inserted = sqlx::query(sql!(
            "INSERT INTO {} (code, promotion_id, single_use)
             SELECT c, $2, $3 FROM unnest($1::text[]) AS t(c) ORDER BY c
             ON CONFLICT (code) DO NOTHING",
            self.qualified("promotion_codes")
        ))
        .bind(&codes)
        .bind(promotion_id.as_str())
        .bind(batch.single_use)
        .execute(&mut *tx)
        .await
        .db()?;
        if inserted.rows_affected() != codes.len() as u64 {
            // Dropping the transaction rolls the batch back.
            return Err(Error::conflict(
                EntityKind::Coupon,
                "a code of the batch already exists; no code of the batch was added",
            ));
        }
        tx.commit().await.db()?;
        Ok(inserted.rows_affected())
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn lookup_codes(&self, codes: &[String]) -> Result<Vec<CodeLookup>> {
        if codes.len() > MAX_CODES {
            return Err(Error::validation(
                "codes",
                format!("at most {MAX_CODES} codes"),
            ));
        }
        let parsed: Vec<Option<CouponCode>> =
            codes.iter().map(|c| CouponCode::parse(c).ok()).collect();
        let wanted: Vec<&str> = parsed.iter().flatten().map(CouponCode::as_str).collect();
        let rows = sqlx::query(sql!(
            "SELECT c.code, c.promotion_id,
                    (c.single_use AND c.holder IS NOT NULL) OR {exhausted} AS exhausted
             FROM {codes} c JOIN {promotions} p ON p.id = c.promotion_id
             WHERE c.code = ANY($1)",
            exhausted = Self::EXHAUSTED,
            codes = self.qualified("promotion_codes"),
            promotions = self.qualified("promotions")
        ))
        .bind(&wanted)
        .fetch_all(&self.db.pool)
        .await
        .db()?;
        // Only the usage is read each time; the bodies (immutable) come from memory.
        let mut listed: Vec<(String, PromotionId, bool)> = Vec::with_capacity(rows.len());
        for r in &rows {
            let id = PromotionId::new(r.try_get::<String, _>("promotion_id").db()?)
                .map_err(|e| corrupt(format!("promotion id: {e}")))?;
            listed.push((r.try_get("code").db()?, id, r.try_get("exhausted").db()?));
        }
        let ids: Vec<&PromotionId> = listed.iter().map(|(_, id, _)| id).collect();
        let bodies = self.promotions_by_id(&ids).await?;
        let mut found: HashMap<String, (Promotion, bool)> = HashMap::with_capacity(rows.len());
        for (code, id, exhausted) in listed {
            let promotion = bodies
                .get(&id)
                .ok_or_else(|| corrupt(format!("code {code} names a missing promotion")))?;
            found.insert(code, (promotion.clone(), exhausted));
        }
        Ok(codes
            .iter()
            .zip(parsed)
            .map(|(text, code)| match code {
                None => CodeLookup::Malformed { given: cut(text) },
                Some(code) => match found.get(code.as_str()) {
                    None => CodeLookup::Unknown { code },
                    Some((promotion, exhausted)) => CodeLookup::Found {
                        code,
                        promotion: Box::new(promotion.clone()),
                        exhausted: *exhausted,
                    },
                },
            })
            .collect())
    }

    #[instrument(skip_all, fields(order = %request.order_id))]
    async fn reserve(&self, request: &RedemptionRequest) -> Result<Redemption> {
        let lines = request.normalized_lines()?;
        let now = self.db.now();
        let expires_at = micros(clock::add(now, request.ttl));
        let lines_json =
            serde_json::to_value(&lines).map_err(|e| Error::permanent("encode lines", e))?;
        // The checks that do not depend on usage, on immutable promotions and codes.
        let ids: Vec<&PromotionId> = lines.iter().map(|l| &l.promotion_id).collect();
        let promotions = self.promotions_by_id(&ids).await?;
        let wanted: Vec<&CouponCode> = lines.iter().filter_map(|l| l.code.as_ref()).collect();
        let codes = self.codes_by_code(&wanted).await?;
        let checked = lines.iter().try_for_each(|l| {
            let owner = l.code.as_ref().and_then(|c| codes.get(c)).map(|(p, _)| p);
            check_line(
                promotions.get(&l.promotion_id),
                l,
                owner,
                request.customer_id.as_ref(),
                now,
            )
        });
        if let Err(e) = checked {
            // A retry of a stored redemption answers as the first call did.
            let mut conn = self.db.pool.acquire().await.db()?;
            return match self.read_redemption(&mut conn, &request.order_id).await? {
                Some(existing) => Self::existing_answer(existing, request, &lines),
                None => Err(e),
            };
        }
        let limits = |l: &RedemptionLine| promotions.get(&l.promotion_id).map(|p| p.limits.clone());
        let limited: Vec<bool> = lines
            .iter()
            .map(|l| limits(l).is_some_and(|x| x.total_uses.is_some() || x.budget.is_some()))
            .collect();
        let per_customer: Vec<Option<i64>> = lines
            .iter()
            .map(|l| limits(l).and_then(|x| x.uses_per_customer).map(i64::from))
            .collect();
        let mut coded: Vec<(&CouponCode, &PromotionId)> = lines
            .iter()
            .filter_map(|l| l.code.as_ref().map(|c| (c, &l.promotion_id)))
            .filter(|(c, _)| codes.get(*c).is_some_and(|(_, single)| *single))
            .collect();
        coded.sort();
        let args = serde_json::json!({
            "order": request.order_id.as_str(),
            "customer": request.customer_id.as_ref().map(CustomerId::as_str),
            "currency": request.currency().code(),
            "total": request.order_total.to_minor_units(),
            "lines": lines_json,
            "expires": expires_at,
            "promotions": ids.iter().map(|id| id.as_str()).collect::<Vec<_>>(),
            "amounts": lines.iter().map(|l| l.amount.to_minor_units()).collect::<Vec<_>>(),
            "limited": limited,
            "per_customer": per_customer,
            "codes": coded.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
            "code_promotions": coded.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>(),
        });
        let (outcome, redemption) = self.reserves.submit(args).await?;
        if outcome == "existing" {
            return Self::existing_answer(redemption, request, &lines);
        }
        Ok(redemption)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn extend(&self, order_id: &OrderId, ttl: Duration) -> Result<Redemption> {
        check_ttl(ttl)?;
        let now = self.db.now();
        let mut conn = self.db.pool.acquire().await.db()?;
        let row = sqlx::query(sql!(
            "UPDATE {} SET expires_at = $2, updated_at = $3
             WHERE order_id = $1 AND state = 'active' AND expires_at > $3
             RETURNING {REDEMPTION_COLUMNS}",
            self.qualified("promotion_redemptions")
        ))
        .bind(order_id.as_str())
        .bind(micros(clock::add(now, ttl)))
        .bind(now)
        .fetch_optional(&mut *conn)
        .await
        .db()?;
        if let Some(row) = row {
            return redemption_from(&row);
        }
        let r = self
            .read_redemption(&mut conn, order_id)
            .await?
            .ok_or_else(|| Error::not_found(EntityKind::Redemption, order_id))?;
        if r.state != RedemptionState::Active {
            return Err(Error::invalid_transition(
                EntityKind::Redemption,
                r.state,
                RedemptionState::Active,
            ));
        }
        Err(Error::invalid_transition(
            EntityKind::Redemption,
            "expired",
            RedemptionState::Active,
        ))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn confirm(&self, order_id: &OrderId) -> Result<Redemption> {
        self.confirms.submit(order_id.clone()).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn release(&self, order_id: &OrderId, reason: &str) -> Result<Redemption> {
        check_reason(reason)?;
        // The pipeline releases on every cancellation, and most cancelled orders of a
        // rush hold nothing (a limit refused them): one read answers those. An active
        // redemption goes through the guarded update, which decides.
        {
            let mut conn = self.db.pool.acquire().await.db()?;
            match self.read_redemption(&mut conn, order_id).await? {
                Some(r) if r.state == RedemptionState::Active => {}
                other => return Self::settled(other, order_id, RedemptionState::Released),
            }
        }
        let now = self.db.now();
        let mut tx = self.db.pool.begin().await.db()?;
        let row = sqlx::query(sql!(
            "UPDATE {} SET state = 'released', reason = $2, updated_at = $3
             WHERE order_id = $1 AND state = 'active'
             RETURNING {REDEMPTION_COLUMNS}",
            self.qualified("promotion_redemptions")
        ))
        .bind(order_id.as_str())
        .bind(reason)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        let Some(row) = row else {
            return self
                .not_active(&mut tx, order_id, RedemptionState::Released)
                .await;
        };
        let r = redemption_from(&row)?;
        self.give_back(&mut tx, std::slice::from_ref(&r)).await?;
        tx.commit().await.db()?;
        Ok(r)
    }

    #[instrument(skip(self))]
    async fn release_expired(&self, now: Timestamp, limit: u32) -> Result<Vec<Redemption>> {
        let limit = check_limit(limit)?;
        let mut tx = self.db.pool.begin().await.db()?;
        let rows = sqlx::query(sql!(
            "UPDATE {t} SET state = 'released', reason = 'expired', updated_at = $1
             WHERE order_id IN (
                 SELECT order_id FROM {t}
                 WHERE state = 'active' AND expires_at <= $1
                 ORDER BY expires_at, order_id
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED)
               AND state = 'active'
             RETURNING {REDEMPTION_COLUMNS}",
            t = self.qualified("promotion_redemptions")
        ))
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await
        .db()?;
        let released = rows
            .iter()
            .map(redemption_from)
            .collect::<Result<Vec<_>>>()?;
        self.give_back(&mut tx, &released).await?;
        tx.commit().await.db()?;
        Ok(released)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn redemption(&self, order_id: &OrderId) -> Result<Option<Redemption>> {
        let mut conn = self.db.pool.acquire().await.db()?;
        self.read_redemption(&mut conn, order_id).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn usage(&self, promotion_id: &PromotionId) -> Result<PromotionUsage> {
        let row = sqlx::query(sql!(
            "SELECT p.currency, p.uses + coalesce(d.uses, 0) AS uses,
                    p.confirmed_uses + coalesce(d.confirmed_uses, 0) AS confirmed_uses,
                    p.spent_minor + coalesce(d.spent_minor, 0) AS spent_minor,
                    p.confirmed_spent_minor + coalesce(d.confirmed_spent_minor, 0)
                        AS confirmed_spent_minor
             FROM {p} AS p
             LEFT JOIN LATERAL (
                 SELECT sum(x.uses)::bigint AS uses, sum(x.spent_minor)::bigint AS spent_minor,
                        sum(x.confirmed_uses)::bigint AS confirmed_uses,
                        sum(x.confirmed_spent_minor)::bigint AS confirmed_spent_minor
                   FROM {d} AS x WHERE x.promotion_id = p.id) AS d ON true
             WHERE p.id = $1",
            p = self.qualified("promotions"),
            d = self.qualified("promotion_usage_deltas")
        ))
        .bind(promotion_id.as_str())
        .fetch_optional(&self.db.pool)
        .await
        .db()?
        .ok_or_else(|| Error::not_found(EntityKind::Promotion, promotion_id))?;
        let currency = Currency::parse(&row.try_get::<String, _>("currency").db()?)
            .map_err(|e| corrupt(format!("promotion currency: {e}")))?;
        let money = |minor: i64| {
            Money::from_minor_units(minor, currency).map_err(|e| corrupt(format!("amount: {e}")))
        };
        let count = |n: i64| u64::try_from(n).map_err(|_| corrupt("negative use count"));
        Ok(PromotionUsage {
            promotion_id: promotion_id.clone(),
            uses: count(row.try_get("uses").db()?)?,
            confirmed_uses: count(row.try_get("confirmed_uses").db()?)?,
            spent: money(row.try_get("spent_minor").db()?)?,
            confirmed_spent: money(row.try_get("confirmed_spent_minor").db()?)?,
        })
    }
}

/// Adds to a promotion's usage counters (no limit is checked here): on its row when it
/// has a total or budget limit, else as an appended delta row, in one statement.
async fn count_usage(
    db: &Db,
    conn: &mut PgConnection,
    id: &PromotionId,
    uses: i64,
    spent: i64,
    confirmed_uses: i64,
    confirmed_spent: i64,
) -> Result<()> {
    sqlx::query(sql!(
        "WITH limited AS (
             UPDATE {p} SET uses = uses + $2, spent_minor = spent_minor + $3,
                            confirmed_uses = confirmed_uses + $4,
                            confirmed_spent_minor = confirmed_spent_minor + $5
              WHERE id = $1 AND (total_limit IS NOT NULL OR budget_minor IS NOT NULL)
             RETURNING id)
         INSERT INTO {d} (promotion_id, uses, spent_minor, confirmed_uses,
                          confirmed_spent_minor)
         SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM limited)",
        p = db.qualified("promotions"),
        d = db.qualified("promotion_usage_deltas")
    ))
    .bind(id.as_str())
    .bind(uses)
    .bind(spent)
    .bind(confirmed_uses)
    .bind(confirmed_spent)
    .execute(&mut *conn)
    .await
    .db()?;
    Ok(())
}

/// Confirms a batch of redemptions in one transaction: one guarded `UPDATE ... WHERE
/// order_id = ANY(..) AND state = 'active'` decides for each order, the confirmed uses
/// are counted once per promotion (in promotion id order), and the orders it did not
/// confirm are read back to classify (a retry of a confirmed one, or not active).
async fn confirm_batch(
    db: &Db,
    pool: &sqlx::PgPool,
    batch: &[OrderId],
) -> Result<Vec<Result<Redemption>>> {
    let ids: Vec<&str> = batch.iter().map(OrderId::as_str).collect();
    let mut tx = pool.begin().await.db()?;
    let rows = sqlx::query(sql!(
        "UPDATE {} SET state = 'confirmed', updated_at = $2
         WHERE order_id = ANY($1) AND state = 'active'
         RETURNING {REDEMPTION_COLUMNS}",
        db.qualified("promotion_redemptions")
    ))
    .bind(&ids)
    .bind(db.now())
    .fetch_all(&mut *tx)
    .await
    .db()?;
    let mut confirmed: HashMap<OrderId, Redemption> = HashMap::with_capacity(rows.len());
    let mut per_promotion: BTreeMap<PromotionId, (i64, i64)> = BTreeMap::new();
    for row in &rows {
        let r = redemption_from(row)?;
        for l in &r.lines {
            let e = per_promotion.entry(l.promotion_id.clone()).or_default();
            e.0 += 1;
            e.1 += l.amount.to_minor_units();
        }
        confirmed.insert(r.order_id.clone(), r);
    }
    for (id, (uses, spent)) in &per_promotion {
        count_usage(db, &mut tx, id, 0, 0, *uses, *spent).await?;
    }
    let rest: Vec<&str> = batch
        .iter()
        .filter(|id| !confirmed.contains_key(*id))
        .map(OrderId::as_str)
        .collect();
    let mut others: HashMap<String, Redemption> = HashMap::new();
    if !rest.is_empty() {
        let rows = sqlx::query(sql!(
            "SELECT {REDEMPTION_COLUMNS} FROM {} WHERE order_id = ANY($1)",
            db.qualified("promotion_redemptions")
        ))
        .bind(&rest)
        .fetch_all(&mut *tx)
        .await
        .db()?;
        for row in &rows {
            let r = redemption_from(row)?;
            others.insert(r.order_id.as_str().to_owned(), r);
        }
    }
    tx.commit().await.db()?;
    Ok(batch
        .iter()
        .map(|id| match confirmed.get(id) {
            Some(r) => Ok(r.clone()),
            None => PgPromotions::settled(
                others.get(id.as_str()).cloned(),
                id,
                RedemptionState::Confirmed,
            ),
        })
        .collect())
}

/// One order's row of `reserve_redemptions()`: its outcome and redemption, or its
/// error. A refusal (SQLSTATE CM010, DETAIL `{"promotion", "reason"}`) is
/// [`Error::PromotionUnavailable`]; any other SQLSTATE maps as every other error.
fn reserved_row(row: &PgRow) -> Result<(String, Redemption)> {
    #[derive(serde::Deserialize)]
    struct Refusal {
        promotion: String,
        reason: Unavailable,
    }
    let outcome: String = row.try_get("o_outcome").db()?;
    if outcome != "error" {
        return Ok((outcome, redemption_from(row)?));
    }
    let failure = crate::error::RowFailure::of_row(row)?;
    if failure.code != code::PROMOTION_UNAVAILABLE {
        return Err(crate::error::from_sqlstate(
            &failure.code,
            failure.detail,
            "reserve a redemption",
        ));
    }
    let detail = failure.detail;
    match serde_json::from_str::<Refusal>(&detail) {
        Ok(r) => Err(Error::PromotionUnavailable {
            promotion: r.promotion,
            reason: r.reason,
        }),
        Err(_) => Err(corrupt("reserve_redemption() refused without details")),
    }
}
