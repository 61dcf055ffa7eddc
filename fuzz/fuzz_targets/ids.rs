//! Fuzz target `ids`: the body is `commerce_core::testkit::fuzz::ids`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| commerce_core::testkit::fuzz::ids(data));
