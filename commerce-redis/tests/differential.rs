//! Differential test: random histories of cart operations (saved addresses included) on `RedisCarts` and on the
//! reference `MemoryCarts` (sharing one manual clock) must give the same answers, on one
//! Redis server and on the cluster. `COMMERCE_REDIS_DIFF_SEEDS` (default 25) and
//! `COMMERCE_REDIS_DIFF_STEPS` (default 60) size it.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use commerce_core::address::{Address, AddressInput};
use commerce_core::cart::{Cart, CartAddresses, CartItem, CartLimits, CartOwner, MergeReport};
use commerce_core::clock::{Clock, ManualClock};
use commerce_core::id::{CartId, CustomerId, ProductId, Sku};
use commerce_core::memory::MemoryCarts;
use commerce_core::store::CartStore;
use commerce_core::{Error, Result};
use commerce_redis::{RedisBackend, RedisCarts};

/// xorshift64*: deterministic, seedable, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[(self.next() % xs.len() as u64) as usize]
    }
}

/// What is compared: the value, or the error's variant and its kind/field.
#[derive(Debug, PartialEq)]
enum Outcome<T> {
    Ok(T),
    NotFound(String),
    Validation(String),
    Currency,
    Other(String),
}

fn outcome<T>(r: Result<T>) -> Outcome<T> {
    match r {
        Ok(v) => Outcome::Ok(v),
        Err(Error::NotFound { kind, .. }) => Outcome::NotFound(format!("{kind:?}")),
        Err(Error::Validation { field, .. }) => Outcome::Validation(field),
        Err(Error::CurrencyMismatch { .. }) => Outcome::Currency,
        Err(e) => Outcome::Other(e.to_string()),
    }
}

async fn history(redis: &RedisBackend, seed: u64, steps: usize) {
    let mut rng = Rng(seed | 1);
    let clock = Arc::new(ManualClock::default());
    let memory = MemoryCarts::new(clock.clone());
    let store = RedisCarts::new(redis.clone(), clock.clone());
    let customers = [
        CustomerId::new(format!("c1-{seed}")).expect("c"),
        CustomerId::new(format!("c2-{seed}")).expect("c"),
    ];
    let guests = [CartId::new_guest(), CartId::new_guest()];
    let ids = [
        guests[0].clone(),
        guests[1].clone(),
        CartId::for_customer(&customers[0]),
        CartId::for_customer(&customers[1]),
    ];
    let owners = [
        CartOwner::Guest,
        CartOwner::Customer(customers[0].clone()),
        CartOwner::Customer(customers[1].clone()),
    ];
    let skus = ["A", "B", "C", "D", "E"];
    let address = |name: &str, country: &str, postal: &str| {
        Some(
            Address::new(AddressInput {
                name: name.into(),
                line1: "1 Test Street".into(),
                city: "Testville".into(),
                postal_code: Some(postal.into()),
                country: country.into(),
                ..AddressInput::default()
            })
            .expect("valid address"),
        )
    };
    let addresses = [
        None,
        address("Erika", "DE", "10115"),
        address("Léa", "FR", "75008"),
    ];
    let prices = ["1.00 USD", "2.50 USD", "0.00 USD", "-1.00 USD", "3.00 EUR"];
    let limit_sets = [
        CartLimits::default(),
        CartLimits {
            max_line_quantity: 5,
            max_lines: 3,
            ttl: Duration::from_secs(3600),
        },
    ];
    for step in 0..steps {
        let limits = *rng.pick(&limit_sets);
        // Mostly the owner that fits the id, sometimes another one.
        let k = (rng.next() % ids.len() as u64) as usize;
        let id = &ids[k];
        let owner = if rng.next() % 5 == 0 {
            rng.pick(&owners).clone()
        } else {
            owners[k.saturating_sub(1)].clone()
        };
        let sku = Sku::new(*rng.pick(&skus)).expect("sku");
        let what = rng.next() % 100;
        let ctx = format!("seed {seed} step {step}: ");
        match what {
            0..=39 => {
                let item = CartItem {
                    product_id: ProductId::new(format!("p-{sku}")).expect("id"),
                    sku: sku.clone(),
                    quantity: *rng.pick(&[0, 1, 2, 3, 5, 6, 98, 99, 100, u32::MAX]),
                    unit_price: rng.pick(&prices).parse().expect("money"),
                    added_at: clock.now(),
                };
                let a = outcome(memory.add_item(id, &owner, item.clone(), &limits).await);
                let b = outcome(store.add_item(id, &owner, item.clone(), &limits).await);
                assert_eq!(b, a, "{ctx}add_item({id}, {owner:?}, {item:?}, {limits:?})");
            }
            40..=54 => {
                let q = *rng.pick(&[0, 1, 4, 5, 6, 99, 100, u32::MAX]);
                let a = outcome(memory.set_quantity(id, &owner, &sku, q, &limits).await);
                let b = outcome(store.set_quantity(id, &owner, &sku, q, &limits).await);
                assert_eq!(b, a, "{ctx}set_quantity({id}, {owner:?}, {sku}, {q})");
            }
            55..=62 => {
                let a = outcome(memory.remove_item(id, &owner, &sku, &limits).await);
                let b = outcome(store.remove_item(id, &owner, &sku, &limits).await);
                assert_eq!(b, a, "{ctx}remove_item({id}, {owner:?}, {sku})");
            }
            63..=66 => {
                let a = outcome(memory.clear_cart(id, &owner).await);
                let b = outcome(store.clear_cart(id, &owner).await);
                assert_eq!(b, a, "{ctx}clear_cart({id}, {owner:?})");
            }
            67..=79 => {
                let guest = rng.pick(&ids).clone();
                let customer = rng.pick(&customers).clone();
                let mut caps = BTreeMap::new();
                for s in skus {
                    if rng.next() % 3 == 0 {
                        caps.insert(Sku::new(s).expect("sku"), (rng.next() % 8) as u32);
                    }
                }
                let a: Outcome<(Cart, MergeReport)> =
                    outcome(memory.merge_carts(&guest, &customer, &caps, &limits).await);
                let b = outcome(store.merge_carts(&guest, &customer, &caps, &limits).await);
                assert_eq!(b, a, "{ctx}merge_carts({guest}, {customer}, {caps:?})");
            }
            80..=89 => {
                clock.advance(*rng.pick(&[
                    Duration::from_secs(1),
                    Duration::from_secs(600),
                    Duration::from_secs(3599),
                    Duration::from_secs(3600),
                    Duration::from_secs(8 * 24 * 3600),
                ]));
            }
            90..=96 => {
                let saved = CartAddresses {
                    shipping: rng.pick(&addresses).clone(),
                    billing: rng.pick(&addresses).clone(),
                };
                let a = outcome(
                    memory
                        .set_addresses(id, &owner, saved.clone(), &limits)
                        .await,
                );
                let b = outcome(
                    store
                        .set_addresses(id, &owner, saved.clone(), &limits)
                        .await,
                );
                assert_eq!(b, a, "{ctx}set_addresses({id}, {owner:?}, {saved:?})");
            }
            _ => {}
        }
        // After every step every cart reads the same for every owner.
        for id in &ids {
            for owner in &owners {
                let a = memory.get_cart(id, owner).await.expect("memory get");
                let b = store.get_cart(id, owner).await.expect("redis get");
                assert_eq!(b, a, "{ctx}get_cart({id}, {owner:?}) after the step");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_carts_agree_with_the_reference() {
    let seeds: u64 = std::env::var("COMMERCE_REDIS_DIFF_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(25);
    let steps: usize = std::env::var("COMMERCE_REDIS_DIFF_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    for redis in [common::single("diff").await, common::cluster("diff").await] {
        for seed in 1..=seeds {
            history(&redis, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), steps).await;
        }
        redis.delete_all().await.expect("cleanup");
    }
}
