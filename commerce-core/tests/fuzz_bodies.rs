//! The fuzz target bodies (`commerce_core::testkit::fuzz`) on stable: the seed corpus of
//! `fuzz/seeds/` plus proptest-generated input (arbitrary bytes, near-valid text and
//! mutated JSON of valid values). `PROPTEST_CASES` raises the number of cases (256).

use std::path::PathBuf;

use commerce_core::testkit::{fuzz, strategies};
use proptest::prelude::*;
use proptest::sample::Index;

type Body = fn(&[u8]);

const TARGETS: [(&str, Body); 4] = [
    ("money", fuzz::money),
    ("ids", fuzz::ids),
    ("category_path", fuzz::category_path),
    ("domain_json", fuzz::domain_json),
];

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the seed corpus {} must exist: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let bytes = std::fs::read(&path).expect("readable seed");
            (path, bytes)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn the_seed_corpus_runs_through_every_body() {
    for (target, body) in TARGETS {
        let seeds = seeds(target);
        assert!(seeds.len() >= 5, "{target}: only {} seeds", seeds.len());
        for (path, bytes) in &seeds {
            let result = std::panic::catch_unwind(|| body(bytes));
            assert!(result.is_ok(), "{target} failed on seed {}", path.display());
        }
    }
}

#[test]
fn the_domain_json_seeds_are_valid_documents() {
    // Seeds that stop parsing (a field renamed) would silently lose their value.
    let read = |name: &str| {
        seeds("domain_json")
            .into_iter()
            .find(|(p, _)| p.file_name().is_some_and(|f| f == name))
            .unwrap_or_else(|| panic!("seed {name} exists"))
            .1
    };
    use commerce_core::{cart::Cart, catalog::*, event::DomainEvent, inventory::*, order::*};
    serde_json::from_slice::<Product>(&read("product.json")).expect("product.json is a Product");
    serde_json::from_slice::<NewProduct>(&read("new_product.json")).expect("a NewProduct");
    serde_json::from_slice::<Cart>(&read("cart.json")).expect("a Cart");
    serde_json::from_slice::<NewOrder>(&read("new_order.json")).expect("a NewOrder");
    serde_json::from_slice::<ReservationRequest>(&read("reservation_request.json"))
        .expect("a ReservationRequest");
    serde_json::from_slice::<DomainEvent>(&read("event.json")).expect("a DomainEvent");
    let bestbuy = seeds("category_path")
        .into_iter()
        .find(|(p, _)| p.ends_with("bestbuy.json"))
        .expect("bestbuy.json seed");
    let report = import_bestbuy(std::str::from_utf8(&bestbuy.1).expect("utf-8")).expect("imports");
    assert_eq!(
        (
            report.rejected.len(),
            report.merged.len(),
            report.implied.len(),
            report.normalised.len()
        ),
        (1, 1, 1, 1),
        "the Best Buy seed exercises each import outcome"
    );
}

/// Replaces one byte, or truncates, at a generated position.
fn mutate(mut bytes: Vec<u8>, at: Index, byte: u8, truncate: bool) -> Vec<u8> {
    if bytes.is_empty() {
        return bytes;
    }
    let i = at.index(bytes.len());
    if truncate {
        bytes.truncate(i);
    } else {
        bytes[i] = byte;
    }
    bytes
}

fn json_of<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("serialisable")
}

fn domain_documents() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        strategies::product().prop_map(|v| json_of(&v)),
        strategies::new_product().prop_map(|v| json_of(&v)),
        strategies::cart().prop_map(|v| json_of(&v)),
        strategies::cart_item(commerce_core::Currency::EUR).prop_map(|v| json_of(&v)),
        strategies::order().prop_map(|v| json_of(&v)),
        strategies::new_order().prop_map(|v| json_of(&v)),
        strategies::reservation_request().prop_map(|v| json_of(&v)),
        strategies::transition().prop_map(|v| json_of(&v)),
        strategies::domain_event().prop_map(|v| json_of(&v)),
    ]
}

/// Best Buy-like records over a small pool of ids and messy names, so that merges,
/// implied ancestors, normalisation and rejections all happen.
fn bestbuy_json() -> impl Strategy<Value = Vec<u8>> {
    let name = prop_oneof![
        4 => prop::sample::select(vec!["Audio", "TV", " TV ", "|Receivers", "Receivers|", "A > B", "Cafe\u{301}", "Café", "\t", ""])
            .prop_map(|s| Some(s.to_owned())),
        1 => Just(None),
        1 => "\\PC{0,12}".prop_map(Some),
    ];
    let element = (
        prop::sample::select(vec!["a", "b", "c", "d", "e", "bad id"]),
        name,
    );
    let record = prop::collection::vec(element, 0..10);
    prop::collection::vec(record, 0..12).prop_map(|records| {
        let records: Vec<serde_json::Value> = records
            .into_iter()
            .map(|path| {
                let (id, name) = path.last().cloned().unwrap_or(("z", Some("Z".into())));
                serde_json::json!({
                    "id": id,
                    "name": name,
                    "path": path.iter().map(|(id, name)| serde_json::json!({"id": id, "name": name})).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::to_vec(&records).expect("json")
    })
}

proptest! {
    #[test]
    fn every_body_survives_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..96)) {
        for (_, body) in TARGETS {
            body(&data);
        }
    }

    #[test]
    fn money_on_near_valid_text(
        text in prop_oneof![
            strategies::money().prop_map(|m| m.to_string()),
            (strategies::money(), strategies::money()).prop_map(|(a, b)| format!("{a}|{b}")),
            (strategies::money(), strategies::money_in(commerce_core::Currency::JPY)).prop_map(|(a, b)| format!("{a}|{b}")),
            "-?[0-9]{0,18}(\\.[0-9]{0,14})? [A-Z]{3}",
            "\\PC{0,24}",
        ]
    ) {
        fuzz::money(text.as_bytes());
    }

    #[test]
    fn money_on_mutated_json(m in strategies::money(), at in any::<Index>(), byte in any::<u8>(), cut in any::<bool>()) {
        fuzz::money(&json_of(&m));
        fuzz::money(&mutate(json_of(&m), at, byte, cut));
    }

    #[test]
    fn ids_on_near_valid_text(text in prop_oneof!["[A-Za-z0-9._:-]{0,130}", "[!-~]{0,130}", "\\PC{0,70}", "\"[A-Za-z0-9 -]{0,10}\""]) {
        fuzz::ids(text.as_bytes());
    }

    #[test]
    fn category_path_on_near_valid_text(
        text in prop_oneof![
            strategies::category_path().prop_map(|p| p.to_string()),
            "([ \t|]{0,2}[A-Za-z&|]{0,5}[ \t|]{0,2}>){0,10}[A-Za-z ]{0,5}",
            "\\PC{0,60}",
        ]
    ) {
        fuzz::category_path(text.as_bytes());
    }

    #[test]
    fn category_path_on_best_buy_like_json(json in bestbuy_json(), at in any::<Index>(), byte in any::<u8>(), cut in any::<bool>()) {
        fuzz::category_path(&json);
        fuzz::category_path(&mutate(json, at, byte, cut));
    }

    #[test]
    fn domain_json_on_valid_and_mutated_documents(doc in domain_documents(), at in any::<Index>(), byte in any::<u8>(), cut in any::<bool>()) {
        fuzz::domain_json(&doc);
        fuzz::domain_json(&mutate(doc, at, byte, cut));
    }
}
