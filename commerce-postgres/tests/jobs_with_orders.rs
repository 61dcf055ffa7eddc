//! `PgConfig::jobs_with_orders`: each new order's queue job is written with the order,
//! exactly one per created order, none for a repeated idempotency key; without the
//! option the order store writes no job (the relay does).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use commerce_core::order::NewOrder;
use commerce_core::store::{OrderQueue, OrderStore};
use commerce_postgres::PgCommerce;

fn new_order(key: &str) -> NewOrder {
    common::new_order(key, &[("SKU-1", 1)])
}

async fn engine(prefix: &str, jobs: bool) -> (PgCommerce, common::SchemaGuard) {
    common::fresh_engine(prefix, |config| config.jobs_with_orders(jobs)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_created_order_gets_exactly_one_job() {
    let (pg, _guard) = engine("jwo", true).await;
    // 30 keys, 10 of them sent twice at once: 40 concurrent creations, 30 orders
    let keys: Vec<String> = (0..40).map(|i| format!("k-{}", i % 30)).collect();
    let tasks: Vec<_> = keys
        .iter()
        .map(|k| {
            let orders = pg.orders.clone();
            let new = new_order(k);
            tokio::spawn(async move { orders.create_order(new).await })
        })
        .collect();
    let mut created = BTreeSet::new();
    let mut all = BTreeSet::new();
    for t in tasks {
        let outcome = t.await.unwrap().unwrap();
        let is_new = outcome.is_created();
        let id = outcome.into_order().id;
        all.insert(id.clone());
        if is_new {
            assert!(created.insert(id), "an order created twice");
        }
    }
    assert_eq!(created.len(), 30);
    assert_eq!(all, created, "a repeated key returned another order");
    let jobs = pg.queue.claim(1000, Duration::from_secs(60)).await.unwrap();
    let job_orders: Vec<_> = jobs.iter().map(|j| j.order_id.clone()).collect();
    let distinct: BTreeSet<_> = job_orders.iter().cloned().collect();
    assert_eq!(
        job_orders.len(),
        30,
        "one job per created order: {job_orders:?}"
    );
    assert_eq!(distinct, created);
    // a retry of a created order's key writes no second job
    let again = pg.orders.create_order(new_order("k-3")).await.unwrap();
    assert!(!again.is_created());
    let more = pg.queue.claim(1000, Duration::from_secs(60)).await.unwrap();
    assert!(more.is_empty(), "a repeated key enqueued {more:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_option_the_order_store_writes_no_job() {
    let (pg, _guard) = engine("jwo_off", false).await;
    let outcome = pg.orders.create_order(new_order("k-1")).await.unwrap();
    assert!(outcome.is_created());
    let jobs = pg.queue.claim(1000, Duration::from_secs(60)).await.unwrap();
    assert!(jobs.is_empty(), "the store enqueued {jobs:?}");
}
