//! The product page: co-purchase counts fed from the event log, then one page with live
//! availability and blended recommendations, within its latency budget.

use std::sync::Arc;
use std::time::Duration;

use commerce_core::Result;
use commerce_core::browse::{ProductPageRequest, ProductPages, StockStatus};
use commerce_core::id::CustomerId;
use commerce_core::order::Order;
use commerce_core::recommend::{CachedCoPurchase, CoPurchaseUpdater, Recommender};

use crate::backends::Backends;
use crate::flow::ellipsis;
use crate::shop::Shop;

/// Counts the confirmed orders' co-purchases (what a background consumer does all day),
/// then shows the page of the first product of `order` to its buyer.
pub async fn show(shop: &Shop, backends: &Backends, order: &Order) -> Result<()> {
    let stores = &shop.stores;
    let updater = CoPurchaseUpdater::new(
        stores.events.clone(),
        stores.orders.clone(),
        backends.co_purchase.clone(),
    )
    .with_history(backends.history.clone(), stores.catalog.clone());
    let counted = updater.catch_up().await?;
    println!(
        "  co-purchase counts: {} confirmed orders recorded from the event log ({} events read)",
        counted.recorded, counted.events
    );

    let counts = CachedCoPurchase::new(
        backends.co_purchase.clone(),
        Duration::from_secs(60),
        100_000,
    );
    let recommender = Recommender::new(
        Arc::new(counts),
        stores.catalog.clone(),
        stores.inventory.clone(),
        stores.clock.clone(),
    )
    .with_search(shop.search.clone())
    .with_history(backends.history.clone());
    let pages = ProductPages::new(
        stores.catalog.clone(),
        stores.inventory.clone(),
        stores.clock.clone(),
    )
    .with_recommender(Arc::new(recommender))
    .with_view_tracking(backends.history.clone());

    let Some(line) = order.lines.first() else {
        return Ok(());
    };
    let Some(product) = stores.catalog.get_product_by_sku(&line.sku).await? else {
        return Ok(());
    };
    let mut request = ProductPageRequest::by_slug(product.slug.clone());
    request.customer = Some(CustomerId::new("demo-customer")?);
    let page = pages.load(&request).await?;
    println!(
        "  /products/{}: {} — {} to {}, in {:.2?}",
        page.product.slug,
        ellipsis(&page.product.title, 50),
        page.price_from,
        page.price_to,
        page.elapsed
    );
    for v in &page.variants {
        let stock = match v.stock {
            StockStatus::InStock { available } => format!("{available} in stock"),
            StockStatus::Backorder => "backorder".to_owned(),
            StockStatus::OutOfStock => "out of stock".to_owned(),
            StockStatus::Unknown => "availability unknown".to_owned(),
        };
        println!("    {:<22} {:>12}  {stock}", v.sku, v.price.to_string());
    }
    println!("  recommended ({}):", page.recommendations.len());
    for r in &page.recommendations {
        let sources: Vec<String> = r.sources.iter().map(|s| format!("{s:?}")).collect();
        println!(
            "    {:<50} {:>12}  {}",
            ellipsis(&r.product.title, 50),
            r.product.price.to_string(),
            sources.join("+")
        );
    }
    if page.omitted.is_empty() {
        println!("  nothing left out");
    } else {
        for o in &page.omitted {
            println!("  left out: {o}");
        }
    }
    Ok(())
}
