//! The Redis adapters' metrics, read back through the Prometheus exporter: product-cache
//! hits and misses, and flash-gate admissions.

mod common;

use std::time::Duration;

use commerce_core::catalog::{CategoryPath, NewProduct};
use commerce_core::id::{SellerId, Sku};
use commerce_core::memory::MemoryEngine;
use commerce_core::store::{CatalogStore, CatalogStoreExt};
use commerce_redis::{CacheConfig, CachedCatalog, FlashSaleGate};
use metrics_exporter_prometheus::PrometheusBuilder;

fn recorded(f: impl std::future::Future<Output = ()>) -> String {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    });
    handle.render()
}

fn has(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "missing `{line}` in:\n{text}"
    );
}

#[test]
fn redis_cache_hits_and_misses_are_counted() {
    let text = recorded(async {
        let redis = common::single("telemetry-cache").await;
        let engine = MemoryEngine::new();
        let product = engine
            .catalog
            .create_product(NewProduct::new(
                SellerId::new("s1").expect("seller"),
                "Phone",
                CategoryPath::parse("Electronics > Phones").expect("path"),
                "Acme",
                Sku::new("PH-1").expect("sku"),
                "199.00 USD".parse().expect("price"),
            ))
            .await
            .expect("product");
        let cache = CachedCatalog::new(
            engine.catalog.clone(),
            redis,
            CacheConfig {
                command_timeout: Duration::from_secs(5),
                ..CacheConfig::default()
            },
        );
        for _ in 0..3 {
            assert!(cache.get_product(&product.id).await.expect("get").is_some());
        }
    });
    has(
        &text,
        r#"commerce_cache_requests_total{cache="redis",result="miss"} 1"#,
    );
    has(
        &text,
        r#"commerce_cache_requests_total{cache="redis",result="hit"} 2"#,
    );
}

#[test]
fn flash_gate_admissions_are_counted() {
    let text = recorded(async {
        let redis = common::single("telemetry-flash").await;
        let gate = FlashSaleGate::new(
            redis,
            Sku::new("HOT-1").expect("sku"),
            Duration::from_secs(60),
        );
        gate.open(2).await.expect("open");
        for _ in 0..5 {
            let _ = gate.admit().await.expect("admit");
        }
    });
    has(
        &text,
        r#"commerce_flash_admissions_total{outcome="admitted"} 2"#,
    );
    has(
        &text,
        r#"commerce_flash_admissions_total{outcome="sold_out"} 3"#,
    );
}
