//! Search latency is recorded per kind of call (`commerce_search_duration_seconds`).

use commerce_core::id::ProductId;
use commerce_core::store::SearchIndex;
use commerce_core::store::search::SearchQuery;
use commerce_search::TantivySearch;
use metrics_exporter_prometheus::PrometheusBuilder;

#[test]
fn search_latency_is_recorded_by_kind() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async {
                let idx = TantivySearch::in_ram().expect("index");
                for _ in 0..2 {
                    idx.search(&SearchQuery::text("phone"))
                        .await
                        .expect("search");
                }
                idx.autocomplete("ph", 5).await.expect("suggest");
                let _ = idx.similar(&ProductId::new("p-1").expect("id"), 5).await;
            })
    });
    let text = handle.render();
    for (kind, n) in [("search", 2), ("suggest", 1), ("similar", 1)] {
        let line = format!(r#"commerce_search_duration_seconds_count{{kind="{kind}"}} {n}"#);
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }
}
