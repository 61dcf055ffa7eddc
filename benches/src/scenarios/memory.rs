//! Scenarios on the in-memory engine: the ceiling of the domain logic itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use commerce_core::Error;
use commerce_core::id::{LocationId, OrderId, Sku};
use commerce_core::inventory::ReservationRequest;
use commerce_core::memory::MemoryEngine;
use commerce_core::store::{InventoryStore, InventoryStoreExt};
use futures::FutureExt;

use super::Scenario;
use crate::harness::{BenchResult, Outcome, Report, Settings, run_closed_loop};

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![Scenario {
        name: "memory-reserve-hot",
        about: "in-memory engine: concurrent buyers reserving one hot SKU",
        run: |s| reserve_hot(s).boxed(),
    }]
}

async fn reserve_hot(settings: Settings) -> BenchResult<Vec<Report>> {
    let engine = MemoryEngine::new();
    let sku = Sku::new("HOT-1")?;
    let location = LocationId::new("main")?;
    let stock: u32 = 1_000_000;
    engine
        .inventory
        .restock(&sku, &location, stock, "bench")
        .await?;
    let inventory = engine.inventory.clone();
    let sold = Arc::new(AtomicU64::new(0));
    let counter = sold.clone();
    let result = run_closed_loop(
        settings.concurrency_or(64),
        settings.seconds_or(5.0),
        move |_, _| {
            let inventory = inventory.clone();
            let sku = sku.clone();
            let counter = counter.clone();
            async move {
                let req = ReservationRequest::new(OrderId::generate(), [(sku, 1)]);
                match inventory.reserve(&req).await {
                    Ok(_) => {
                        counter.fetch_add(1, Ordering::Relaxed);
                        Outcome::Ok
                    }
                    Err(Error::OutOfStock { .. }) => Outcome::Rejected,
                    Err(_) => Outcome::Error,
                }
            }
        },
    )
    .await;
    let hot = Sku::new("HOT-1")?;
    let left = engine.inventory.available(&hot).await?;
    let reserved = engine.inventory.stock(&hot).await?.reserved();
    let oversold = (reserved + left).saturating_sub(u64::from(stock))
        + sold
            .load(Ordering::Relaxed)
            .saturating_sub(u64::from(stock));
    Ok(vec![
        result
            .report("memory-reserve-hot", "memory")
            .field("oversold", oversold)
            .field("concurrency", settings.concurrency_or(64)),
    ])
}
