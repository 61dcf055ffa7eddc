//! The pipeline's fused steps: [`PgOrderSteps`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use commerce_core::clock::Timestamp;
use commerce_core::event::DomainEvent;
use commerce_core::id::OrderId;
use commerce_core::inventory::{ReservationRequest, ReservationState};
use commerce_core::order::{Order, OrderStatus, Transition};
use commerce_core::store::steps::paid_reason;
use commerce_core::store::{OrderSteps, StepOutcome};
use commerce_core::{EntityKind, Error, Result};
use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use crate::batch::{Batcher, RunBatch};
use crate::db::Db;
use crate::error::{DbResult, RowFailure, corrupt};

/// How concurrent steps are grouped (see [`PgConfig::step_batching`](crate::PgConfig::step_batching)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepBatching {
    /// Batches in flight at once per step.
    pub lanes: usize,
    /// Most orders in one batch.
    pub max_batch: usize,
}

impl Default for StepBatching {
    /// One batch in flight per step, up to 128 orders each: the steps that arrive
    /// meanwhile wait and go together as the next batch, so batches grow with the load
    /// and each order costs the database less. On two cores this gave 25–40 % more
    /// orders per second than two lanes (BENCHMARKS.md, `checkout`); a database with
    /// many cores may want more lanes.
    fn default() -> Self {
        StepBatching {
            lanes: 1,
            max_batch: 128,
        }
    }
}

/// The [`OrderSteps`] on PostgreSQL: each step is one plpgsql function over a batch of
/// orders (`step_reserve_orders`, `step_confirm_payments`) in one transaction, writing
/// each order, its history, the reservation, the ledger and the outbox events together.
///
/// Concurrent steps (many workers) are grouped: the steps that arrive while a batch is
/// in flight run together as the next one, **one statement and one commit** for the
/// whole batch. Every order keeps its own guarded decision, ledger rows, history and
/// events, and one order's failure never fails its neighbours: a refusal is that
/// order's answer, and a batch that fails as a whole for any other reason than a
/// retryable one is run again one order at a time. Every commit is durable
/// (`synchronous_commit` is not touched).
#[derive(Debug)]
pub struct PgOrderSteps {
    reserve: Arc<Batcher<ReserveReq, StepOutcome>>,
    confirm: Arc<Batcher<ConfirmReq, StepOutcome>>,
}

struct ReserveReq {
    order_id: OrderId,
    req: serde_json::Value,
    ttl_us: i64,
}

struct ConfirmReq {
    order_id: OrderId,
    payment_ref: String,
    reason: String,
    req: serde_json::Value,
}

/// A step's request as its batch function takes it.
trait StepRequest: Send + Sync + Sized + 'static {
    /// The status the step starts from (named in a `CM004` conflict).
    const FROM: &'static str;
    fn order_id(&self) -> &OrderId;
    /// Binds a batch's arguments, `now` included, in the function's order.
    fn bind<'q>(query: PgQuery<'q>, part: &'q [Self], now: Timestamp) -> PgQuery<'q>;
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

impl StepRequest for ReserveReq {
    const FROM: &'static str = "CREATED";
    fn order_id(&self) -> &OrderId {
        &self.order_id
    }
    fn bind<'q>(query: PgQuery<'q>, part: &'q [Self], now: Timestamp) -> PgQuery<'q> {
        query
            .bind(part.iter().map(|r| r.order_id.as_str()).collect::<Vec<_>>())
            .bind(part.iter().map(|r| &r.req).collect::<Vec<_>>())
            .bind(now)
            .bind(part.iter().map(|r| r.ttl_us).collect::<Vec<_>>())
    }
}

impl StepRequest for ConfirmReq {
    const FROM: &'static str = "PAYMENT_PENDING";
    fn order_id(&self) -> &OrderId {
        &self.order_id
    }
    fn bind<'q>(query: PgQuery<'q>, part: &'q [Self], now: Timestamp) -> PgQuery<'q> {
        query
            .bind(part.iter().map(|r| r.order_id.as_str()).collect::<Vec<_>>())
            .bind(
                part.iter()
                    .map(|r| r.payment_ref.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(part.iter().map(|r| r.reason.as_str()).collect::<Vec<_>>())
            .bind(part.iter().map(|r| &r.req).collect::<Vec<_>>())
            .bind(now)
    }
}

/// The batch runner of one step: `sql` over the batch on `pool`, then its orders one at
/// a time if the batch failed as a whole ([`one_by_one_on_failure`]).
fn run_step<R: StepRequest>(db: Arc<Db>, pool: PgPool, sql: String) -> RunBatch<R, StepOutcome> {
    Arc::new(move |batch| {
        let (db, pool, sql) = (db.clone(), pool.clone(), sql.clone());
        Box::pin(async move {
            one_by_one_on_failure(batch.len(), |part| run_part(&db, &pool, &sql, &batch[part]))
                .await
        })
    })
}

/// One statement over `part`: one answer per order, in order.
async fn run_part<R: StepRequest>(
    db: &Db,
    pool: &PgPool,
    sql: &str,
    part: &[R],
) -> Result<Vec<Result<StepOutcome>>> {
    let query = R::bind(sqlx::query(sqlx::AssertSqlSafe(sql)), part, db.now());
    let rows = query.fetch_all(pool).await.db()?;
    db.written();
    Ok(decode_all(&rows, part.iter().map(R::order_id), R::FROM))
}

fn event(e: DomainEvent) -> Result<serde_json::Value> {
    serde_json::to_value(e).map_err(corrupt)
}

fn status_event(order: &OrderId, from: OrderStatus, to: OrderStatus) -> Result<serde_json::Value> {
    event(DomainEvent::OrderStatusChanged {
        order_id: order.clone(),
        from,
        to,
    })
}

impl PgOrderSteps {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        let batching = db.batching;
        // The batches get connections of their own (one per lane and step, opened on
        // first use with the pool's options): a batch carries many orders, so it must
        // never queue behind the single-order reads of a busy shared pool.
        let lanes = u32::try_from(batching.lanes).unwrap_or(64);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(lanes * 2)
            .acquire_timeout(std::time::Duration::from_secs(30))
            .connect_lazy_with((*db.pool.connect_options()).clone());
        let reserve_sql = format!(
            "SELECT * FROM {}($1, $2, $3, $4) ORDER BY n",
            db.qualified("step_reserve_orders")
        );
        let confirm_sql = format!(
            "SELECT * FROM {}($1, $2, $3, $4, $5) ORDER BY n",
            db.qualified("step_confirm_payments")
        );
        let run_reserve = run_step::<ReserveReq>(db.clone(), pool.clone(), reserve_sql);
        let run_confirm = run_step::<ConfirmReq>(db, pool, confirm_sql);
        PgOrderSteps {
            reserve: Batcher::new(batching.lanes, batching.max_batch, run_reserve),
            confirm: Batcher::new(batching.lanes, batching.max_batch, run_confirm),
        }
    }
}

#[async_trait]
impl OrderSteps for PgOrderSteps {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn reserve_order(&self, order: &Order, ttl: Duration) -> Result<StepOutcome> {
        let request = ReservationRequest {
            ttl,
            ..ReservationRequest::new(
                order.id.clone(),
                order.lines.iter().map(|l| (l.sku.clone(), l.quantity)),
            )
        };
        let lines = request.normalized_lines()?;
        let ttl_us = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
        let req = json!({
            "skus": lines.iter().map(|l| l.sku.as_str()).collect::<Vec<_>>(),
            "qtys": lines.iter().map(|l| l.quantity).collect::<Vec<_>>(),
            "lines": serde_json::to_value(&lines).map_err(corrupt)?,
            "reservation_event": event(DomainEvent::ReservationChanged {
                order_id: order.id.clone(),
                state: ReservationState::Active,
                skus: lines.iter().map(|l| l.sku.clone()).collect(),
            })?,
            "pending_event": status_event(&order.id, OrderStatus::Created, OrderStatus::PaymentPending)?,
            "cancel_event": status_event(&order.id, OrderStatus::Created, OrderStatus::Cancelled)?,
        });
        let r = self
            .reserve
            .submit(ReserveReq {
                order_id: order.id.clone(),
                req,
                ttl_us,
            })
            .await;
        commerce_core::telemetry::record_reserve_step("postgres", &r);
        r
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn confirm_payment(&self, order: &Order, payment_ref: &str) -> Result<StepOutcome> {
        let reason = paid_reason(payment_ref, &order.totals.total);
        let mut paid = Transition::new(
            OrderStatus::PaymentPending,
            OrderStatus::PaymentConfirmed,
            reason.clone(),
        );
        paid.payment_ref = Some(payment_ref.to_owned());
        paid.validate()?;
        // The reservation's SKUs, as its event lists them: the normalised lines.
        let skus: Vec<_> = ReservationRequest::new(
            order.id.clone(),
            order.lines.iter().map(|l| (l.sku.clone(), l.quantity)),
        )
        .normalized_lines()?
        .into_iter()
        .map(|l| l.sku)
        .collect();
        let req = json!({
            "reservation_event": event(DomainEvent::ReservationChanged {
                order_id: order.id.clone(),
                state: ReservationState::Confirmed,
                skus,
            })?,
            "paid_event": status_event(&order.id, OrderStatus::PaymentPending, OrderStatus::PaymentConfirmed)?,
            "cancel_event": status_event(&order.id, OrderStatus::PaymentPending, OrderStatus::Cancelled)?,
        });
        self.confirm
            .submit(ConfirmReq {
                order_id: order.id.clone(),
                payment_ref: payment_ref.to_owned(),
                reason,
                req,
            })
            .await
    }
}

/// Runs a batch of `len` orders (`run(0..len)`). A batch of several that fails as a
/// whole for a reason that is not retryable (the step functions return every expected
/// refusal as a row, so this is a failure nobody planned for) wrote nothing; its orders
/// are then run one at a time, so that one order's failure never fails its neighbours.
/// A retryable failure (a lost connection, a deadlock) fails the whole batch: each
/// caller retries its step.
async fn one_by_one_on_failure<F, Fut>(len: usize, run: F) -> Result<Vec<Result<StepOutcome>>>
where
    F: Fn(std::ops::Range<usize>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Result<StepOutcome>>>>,
{
    match run(0..len).await {
        Err(e) if len > 1 && !e.is_retryable() => {
            tracing::warn!(error = %e, orders = len, "step batch failed; running its orders one at a time");
            let mut answers = Vec::with_capacity(len);
            for i in 0..len {
                match run(i..i + 1).await {
                    Ok(one) => answers.extend(one),
                    Err(e) => answers.push(Err(e)),
                }
            }
            Ok(answers)
        }
        other => other,
    }
}

fn decode_all<'a>(
    rows: &[PgRow],
    ids: impl Iterator<Item = &'a OrderId>,
    expected: &str,
) -> Vec<Result<StepOutcome>> {
    let ids: Vec<&OrderId> = ids.collect();
    if rows.len() != ids.len() {
        let e = corrupt(format!(
            "a step batch of {} returned {} rows",
            ids.len(),
            rows.len()
        ));
        let fail = crate::batch::shared_failure(e);
        return ids.iter().map(|_| Err(fail())).collect();
    }
    rows.iter()
        .zip(ids)
        .map(|(row, id)| decode(row, id, expected))
        .collect()
}

fn decode(row: &PgRow, id: &OrderId, expected: &str) -> Result<StepOutcome> {
    let outcome: String = row.try_get("outcome").db()?;
    if outcome == "error" {
        return Err(step_error(id, expected, RowFailure::of_row(row)?));
    }
    let body: serde_json::Value = row.try_get("o_body").db()?;
    let mut order: Order = serde_json::from_value(body).map_err(corrupt)?;
    order.status = OrderStatus::parse(&row.try_get::<String, _>("o_status").db()?)?;
    order.version = u64::try_from(row.try_get::<i64, _>("o_version").db()?)
        .map_err(|_| corrupt("negative order version"))?;
    order.payment_ref = row.try_get("o_payment_ref").db()?;
    order.updated_at = row.try_get("o_updated_at").db()?;
    let reservation = match row.try_get::<Option<String>, _>("r_state").db()? {
        None => None,
        Some(_) => Some(crate::inventory::reservation_columns(
            row,
            id.clone(),
            "r_",
        )?),
    };
    Ok(StepOutcome { order, reservation })
}

/// Maps a failed step by its SQLSTATE.
fn step_error(id: &OrderId, expected: &str, f: RowFailure) -> Error {
    match f.code.as_str() {
        "CM006" => Error::not_found(EntityKind::Order, id),
        "CM004" => Error::conflict(
            EntityKind::Order,
            format!("order {id} is {}, not {expected}", f.detail),
        ),
        "CM003" => Error::conflict(
            EntityKind::Reservation,
            format!("order {id} already holds a different reservation"),
        ),
        "CM005" => Error::permanent(
            format!("order {id} is PAYMENT_PENDING without a reservation"),
            f,
        ),
        "CM007" => Error::permanent(
            format!("order {id} is CREATED but its reservation is {}", f.detail),
            f,
        ),
        _ => crate::error::from_sqlstate(&f.code, f.detail, &format!("step of order {id}")),
    }
}
