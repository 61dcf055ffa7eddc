//! Every store call of this adapter carries a `tracing` span (`#[instrument]`).

#[test]
fn every_trait_method_has_a_span() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let missing = commerce_core::testkit::missing_spans(&src);
    assert!(
        missing.is_empty(),
        "adapter calls without a span:\n{}",
        missing.join("\n")
    );
}
