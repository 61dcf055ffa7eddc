//! Fuzz target `money`: the body is `commerce_core::testkit::fuzz::money`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| commerce_core::testkit::fuzz::money(data));
