//! Fuzz target `category_path`: the body is `commerce_core::testkit::fuzz::category_path`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| commerce_core::testkit::fuzz::category_path(data));
