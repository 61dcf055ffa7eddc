//! Fuzz target `domain_json`: the body is `commerce_core::testkit::fuzz::domain_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| commerce_core::testkit::fuzz::domain_json(data));
