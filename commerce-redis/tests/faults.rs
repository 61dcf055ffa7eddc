//! Faults and bad input against real servers: a private redis-server restarted in the
//! middle of operations; invalid, absurd and tampered input; cart isolation.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use commerce_core::cart::{CartItem, CartLimits, CartOwner};
use commerce_core::catalog::{CategoryPath, NewProduct, ProductStatus};
use commerce_core::clock::{Clock, ManualClock, SystemClock};
use commerce_core::id::{CartId, CustomerId, LocationId, ProductId, SellerId, Sku};
use commerce_core::memory::MemoryEngine;
use commerce_core::service::{CartService, ClientCart, Stores};
use commerce_core::store::{CartStore, CatalogStore, CatalogStoreExt, InventoryStore};
use commerce_core::{EntityKind, Error};
use commerce_redis::{CacheConfig, CachedCatalog, RedisCarts, RedisConfig};
use common::PrivateRedis;

fn item(sku: &str, quantity: u32, price: &str, clock: &dyn Clock) -> CartItem {
    CartItem {
        product_id: ProductId::new(format!("p-{sku}")).expect("id"),
        sku: Sku::new(sku).expect("sku"),
        quantity,
        unit_price: price.parse().expect("money"),
        added_at: clock.now(),
    }
}

fn cust(c: &str) -> CustomerId {
    CustomerId::new(c).expect("customer")
}

async fn connect(server: &PrivateRedis) -> commerce_redis::RedisBackend {
    RedisConfig::single(server.url())
        .with_prefix("faults")
        .expect("prefix")
        .with_response_timeout(Duration::from_millis(500))
        .connect()
        .await
        .expect("connect to the private redis")
}

/// Retries `f` until it succeeds (bounded); every failure on the way must be retryable.
async fn until_ok<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = commerce_core::Result<T>>,
{
    for _ in 0..200 {
        match f().await {
            Ok(v) => return v,
            Err(e) => assert!(e.is_retryable(), "{what}: a non-retryable error: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: Redis did not come back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_mid_writes_gives_retryable_errors_reconnects_and_loses_no_acknowledged_add() {
    let mut server = PrivateRedis::start();
    let redis = connect(&server).await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let carts = Arc::new(RedisCarts::new(redis.clone(), clock.clone()));
    let limits = CartLimits {
        max_line_quantity: 1_000_000,
        ..CartLimits::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let (carts, stop, clock) = (carts.clone(), stop.clone(), clock.clone());
            tokio::spawn(async move {
                let id = CartId::new_guest();
                let (mut ok, mut failed) = (0u64, 0u64);
                while !stop.load(Ordering::SeqCst) {
                    match carts
                        .add_item(
                            &id,
                            &CartOwner::Guest,
                            item("A", 1, "1.00 USD", clock.as_ref()),
                            &limits,
                        )
                        .await
                    {
                        Ok(_) => ok += 1,
                        Err(e) => {
                            assert!(e.is_retryable(), "a failed write during a restart: {e:?}");
                            failed += 1;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
                (id, ok, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let probe = CartId::new_guest();
    let down = carts
        .add_item(
            &probe,
            &CartOwner::Guest,
            item("A", 1, "1.00 USD", clock.as_ref()),
            &limits,
        )
        .await;
    assert!(
        matches!(&down, Err(e) if e.is_retryable()),
        "Redis is down: a retryable error, got {down:?}"
    );
    server.restart();
    // Reconnects on its own: the same store object works again.
    until_ok("add after restart", || {
        carts.add_item(
            &probe,
            &CartOwner::Guest,
            item("B", 1, "1.00 USD", clock.as_ref()),
            &limits,
        )
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let mut total_failed = 0;
    for w in writers {
        let (id, ok, failed) = w.await.expect("writer");
        total_failed += failed;
        let cart = until_ok("read back", || carts.get_cart(&id, &CartOwner::Guest))
            .await
            .expect("the cart survived the restart");
        let q = u64::from(cart.items[0].quantity);
        assert!(
            q >= ok && q <= ok + failed,
            "{ok} acknowledged adds (+{failed} failed) but quantity {q}"
        );
        assert_eq!(cart.version, q, "one version per applied add");
    }
    assert!(total_failed > 0, "the restart must have been noticed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_during_merges_never_leaves_a_cart_half_merged() {
    let mut server = PrivateRedis::start();
    let redis = connect(&server).await;
    let clock = Arc::new(ManualClock::default());
    let carts = Arc::new(RedisCarts::new(redis.clone(), clock.clone()));
    let limits = CartLimits::default();
    let pairs = 60usize;
    let mut setup = Vec::new();
    for n in 0..pairs {
        let guest = CartId::new_guest();
        for s in ["G1", "G2", "G3"] {
            carts
                .add_item(
                    &guest,
                    &CartOwner::Guest,
                    item(s, 2, "1.00 USD", clock.as_ref()),
                    &limits,
                )
                .await
                .expect("guest add");
        }
        let customer = cust(&format!("c{n}"));
        let before = carts
            .add_item(
                &CartId::for_customer(&customer),
                &CartOwner::Customer(customer.clone()),
                item("C1", 1, "1.00 USD", clock.as_ref()),
                &limits,
            )
            .await
            .expect("customer add");
        setup.push((guest, customer, before));
    }
    // A third merges before the crash, a third is in flight when it happens, a third
    // comes after (and must fail, retryably).
    let third = pairs / 3;
    for (guest, customer, _) in &setup[..third] {
        carts
            .merge_carts(guest, customer, &BTreeMap::new(), &limits)
            .await
            .expect("merge before the crash");
    }
    let merged = Arc::new(AtomicU64::new(third as u64));
    let in_flight: Vec<_> = setup[third..2 * third]
        .iter()
        .cloned()
        .map(|(guest, customer, _)| {
            let (carts, merged) = (carts.clone(), merged.clone());
            tokio::spawn(async move {
                match carts
                    .merge_carts(&guest, &customer, &BTreeMap::new(), &CartLimits::default())
                    .await
                {
                    Ok(_) => {
                        merged.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => assert!(e.is_retryable(), "a failed merge: {e:?}"),
                }
            })
        })
        .collect();
    server.kill();
    for m in in_flight {
        m.await.expect("merge task");
    }
    for (guest, customer, _) in setup[2 * third..].iter().take(3) {
        let started = std::time::Instant::now();
        let down = carts
            .merge_carts(guest, customer, &BTreeMap::new(), &limits)
            .await;
        assert!(
            matches!(&down, Err(e) if e.is_retryable()),
            "a merge while Redis is down: {down:?}"
        );
        eprintln!(
            "a merge with Redis down failed after {:?}",
            started.elapsed()
        );
    }
    server.restart();
    let mut whole = 0;
    for (guest, customer, before) in &setup {
        let owner = CartOwner::Customer(customer.clone());
        let cid = CartId::for_customer(customer);
        let g = until_ok("guest", || carts.get_cart(guest, &CartOwner::Guest)).await;
        let c = until_ok("customer", || carts.get_cart(&cid, &owner))
            .await
            .expect("the customer cart exists");
        match g {
            Some(g) => {
                assert_eq!(g.items.len(), 3, "the guest cart is intact");
                assert_eq!(&c, before, "not merged: the customer cart is as before");
            }
            None => {
                assert_eq!(
                    c.items.len(),
                    4,
                    "merged: all guest lines are in the customer cart"
                );
                assert_eq!(c.version, before.version + 1);
                whole += 1;
            }
        }
    }
    assert!(
        whole >= merged.load(Ordering::SeqCst) as usize,
        "acknowledged merges are durable"
    );
    assert!(whole < pairs, "the crash must have interrupted some merges");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn product_reads_fall_through_to_the_catalog_when_redis_is_down() {
    let mut server = PrivateRedis::start();
    let redis = connect(&server).await;
    let engine = MemoryEngine::new();
    let mut new = NewProduct::new(
        SellerId::new("s1").expect("id"),
        "Phone",
        CategoryPath::parse("Electronics > Phones").expect("path"),
        "Acme",
        Sku::new("PH-1").expect("sku"),
        "199.00 USD".parse().expect("money"),
    );
    new.status = ProductStatus::Active;
    let product = engine.catalog.create_product(new).await.expect("insert");
    let cache = CachedCatalog::new(engine.catalog.clone(), redis, CacheConfig::default());
    assert_eq!(
        cache.get_product(&product.id).await.expect("warm"),
        Some(product.clone())
    );
    server.kill();
    for _ in 0..6 {
        assert_eq!(
            cache
                .get_product(&product.id)
                .await
                .expect("degraded, not failed"),
            Some(product.clone())
        );
        assert_eq!(
            cache
                .get_product_by_slug(&product.slug)
                .await
                .expect("degraded, not failed"),
            Some(product.clone())
        );
    }
    assert!(
        matches!(
            cache.breaker().state(),
            commerce_core::resilience::BreakerState::Open { .. }
        ),
        "after repeated failures the cache is skipped, not waited for"
    );
    server.restart();
    until_ok("cache back", || cache.get_product(&product.id)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_a_typed_error_and_writes_nothing() {
    let redis = common::single("bad-input").await;
    let clock = Arc::new(ManualClock::default());
    let carts = RedisCarts::new(redis.clone(), clock.clone());
    let limits = CartLimits {
        max_lines: 3,
        ..CartLimits::default()
    };
    let guest = CartOwner::Guest;
    let id = CartId::new_guest();

    // Invalid ids never reach Redis: the id types refuse them (and braces, which would
    // change hash-slot placement).
    for bad in ["", "has space", "{tag}", "a/b", &"x".repeat(81)] {
        assert!(
            matches!(CartId::new(bad), Err(Error::Validation { .. })),
            "{bad:?}"
        );
    }
    assert!(matches!(
        Sku::new("drop table;"),
        Err(Error::Validation { .. })
    ));

    // Absurd quantities.
    for q in [0, 100, u32::MAX] {
        assert!(
            matches!(
                carts
                    .add_item(
                        &id,
                        &guest,
                        item("A", q, "1.00 USD", clock.as_ref()),
                        &limits
                    )
                    .await,
                Err(Error::Validation { .. })
            ),
            "quantity {q}"
        );
    }
    assert_eq!(
        carts.get_cart(&id, &guest).await.expect("get"),
        None,
        "nothing written"
    );
    let negative = carts
        .add_item(
            &id,
            &guest,
            item("A", 1, "-5.00 USD", clock.as_ref()),
            &limits,
        )
        .await;
    assert!(matches!(negative, Err(Error::Validation { .. })));
    assert_eq!(
        carts.get_cart(&id, &guest).await.expect("get"),
        None,
        "nothing written"
    );

    // Oversized carts.
    for s in ["A", "B", "C"] {
        carts
            .add_item(&id, &guest, item(s, 1, "1.00 USD", clock.as_ref()), &limits)
            .await
            .expect("add");
    }
    let full = carts.get_cart(&id, &guest).await.expect("get");
    assert!(matches!(
        carts
            .add_item(
                &id,
                &guest,
                item("D", 1, "1.00 USD", clock.as_ref()),
                &limits
            )
            .await,
        Err(Error::Validation { .. })
    ));
    assert!(matches!(
        carts
            .set_quantity(&id, &guest, &Sku::new("A").expect("sku"), u32::MAX, &limits)
            .await,
        Err(Error::Validation { .. })
    ));
    assert!(matches!(
        carts
            .add_item(
                &id,
                &guest,
                item("A", 1, "1.00 EUR", clock.as_ref()),
                &limits
            )
            .await,
        Err(Error::CurrencyMismatch { .. })
    ));
    assert_eq!(
        carts.get_cart(&id, &guest).await.expect("get"),
        full,
        "unchanged"
    );

    // A client-held cart tampered with: refused whole, nothing written.
    let engine = MemoryEngine::with_clock(clock.clone());
    let mut new = NewProduct::new(
        SellerId::new("s1").expect("id"),
        "Phone",
        CategoryPath::parse("Electronics > Phones").expect("path"),
        "Acme",
        Sku::new("PH-1").expect("sku"),
        "199.00 USD".parse().expect("money"),
    );
    new.status = ProductStatus::Active;
    engine.catalog.create_product(new).await.expect("product");
    engine
        .inventory
        .restock(
            &Sku::new("PH-1").expect("sku"),
            &LocationId::new("wh").expect("loc"),
            50,
            "r",
        )
        .await
        .expect("restock");
    let mut stores = Stores::memory(&engine);
    stores.carts = Arc::new(carts.clone());
    let service = CartService::new(&stores, CartLimits::default());
    let target = CartId::new_guest();
    for tampered in [
        r#"{"items":[{"sku":"PH-1","quantity":2,"discount":"100%"}]}"#,
        r#"{"items":[{"sku":"PH-1","quantity":-2}]}"#,
        r#"{"items":[{"sku":"PH-1","quantity":99999999999}]}"#,
        r#"{"items":[{"sku":"PH 1; DEL *","quantity":1}]}"#,
        r#"{"items":[{"sku":"PH-1","quantity":1,"unit_price":{"amount":"0.001","currency":"USD"}}]}"#,
        r#"{"items":[{"sku":"PH-1","quantity":1,"unit_price":{"amount":1,"currency":"USD"}}]}"#,
        r#"{"items":"#,
    ] {
        assert!(
            matches!(
                ClientCart::from_json(tampered),
                Err(Error::Validation { .. })
            ),
            "{tampered}"
        );
    }
    let huge = ClientCart::from_json(r#"{"items":[{"sku":"PH-1","quantity":100000}]}"#)
        .expect("well-formed");
    assert!(matches!(
        service.import_client_cart(&target, &guest, &huge).await,
        Err(Error::Validation { .. })
    ));
    assert_eq!(
        carts.get_cart(&target, &guest).await.expect("get"),
        None,
        "nothing written"
    );
    // A displayed price of 0.01 is not what gets stored: the catalog price is.
    let cheap = ClientCart::from_json(
        r#"{"items":[{"sku":"PH-1","quantity":1,"unit_price":{"amount":"0.01","currency":"USD"}}]}"#,
    )
    .expect("well-formed");
    let (cart, _) = service
        .import_client_cart(&target, &guest, &cheap)
        .await
        .expect("import");
    assert_eq!(
        cart.expect("cart").items[0].unit_price.to_string(),
        "199.00 USD"
    );

    // Data tampered with inside Redis is a permanent backend error, not a panic.
    let mut conn = redis.connection();
    let key = format!("{}:cart:{{{}}}", redis.prefix(), id);
    redis::cmd("HSET")
        .arg(&key)
        .arg("v")
        .arg("not-a-number")
        .query_async::<()>(&mut conn)
        .await
        .expect("tamper");
    assert!(matches!(
        carts.get_cart(&id, &guest).await,
        Err(Error::Backend {
            retryable: false,
            ..
        })
    ));
    redis.delete_all().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guest_ids_are_unguessable_and_carts_are_isolated() {
    let redis = common::single("isolation").await;
    let clock = Arc::new(ManualClock::default());
    let carts = Arc::new(RedisCarts::new(redis.clone(), clock.clone()));
    let limits = CartLimits::default();

    // 128 random bits each: no repeats, no shared structure beyond the prefix.
    let ids: Vec<CartId> = (0..10_000).map(|_| CartId::new_guest()).collect();
    let unique: std::collections::HashSet<&str> = ids.iter().map(CartId::as_str).collect();
    assert_eq!(unique.len(), ids.len());
    for id in &ids[..100] {
        let hex = id.as_str().strip_prefix("g-").expect("guest prefix");
        assert_eq!(hex.len(), 32);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    let common_prefix = ids
        .windows(2)
        .map(|w| {
            w[0].as_str()
                .bytes()
                .zip(w[1].as_str().bytes())
                .take_while(|(a, b)| a == b)
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(common_prefix < 2 + 8, "consecutive guest ids look related");

    let real = ids[0].clone();
    carts
        .add_item(
            &real,
            &CartOwner::Guest,
            item("A", 1, "1.00 USD", clock.as_ref()),
            &limits,
        )
        .await
        .expect("add");
    for guess in [
        "g-00000000000000000000000000000000",
        "g-1",
        "g-ffffffffffffffffffffffffffffffff",
    ] {
        let guess = CartId::new(guess).expect("well-formed");
        assert_eq!(
            carts
                .get_cart(&guess, &CartOwner::Guest)
                .await
                .expect("get"),
            None
        );
    }

    // One customer cannot reach another's cart: not through the store, not through the
    // service.
    let (c1, c2) = (cust("alice"), cust("mallory"));
    let c1_cart = CartId::for_customer(&c1);
    let alice = CartOwner::Customer(c1.clone());
    let mallory = CartOwner::Customer(c2.clone());
    let original = carts
        .add_item(
            &c1_cart,
            &alice,
            item("A", 2, "1.00 USD", clock.as_ref()),
            &limits,
        )
        .await
        .expect("alice adds");
    assert_eq!(carts.get_cart(&c1_cart, &mallory).await.expect("get"), None);
    assert!(matches!(
        carts
            .add_item(
                &c1_cart,
                &mallory,
                item("X", 1, "1.00 USD", clock.as_ref()),
                &limits
            )
            .await,
        Err(Error::NotFound {
            kind: EntityKind::Cart,
            ..
        })
    ));
    assert!(matches!(
        carts
            .set_quantity(&c1_cart, &mallory, &Sku::new("A").expect("sku"), 9, &limits)
            .await,
        Err(Error::NotFound {
            kind: EntityKind::Cart,
            ..
        })
    ));
    carts.clear_cart(&c1_cart, &mallory).await.expect("a no-op");
    let (m_cart, report) = carts
        .merge_carts(&c1_cart, &c2, &BTreeMap::new(), &limits)
        .await
        .expect("merging someone else's cart merges nothing");
    assert!(m_cart.items.is_empty() && report.dropped.is_empty() && report.capped.is_empty());
    assert_eq!(
        carts.get_cart(&c1_cart, &alice).await.expect("get"),
        Some(original)
    );

    let engine = MemoryEngine::with_clock(clock.clone());
    let mut stores = Stores::memory(&engine);
    stores.carts = carts.clone();
    let service = CartService::new(&stores, limits);
    assert!(matches!(
        service.get(&c1_cart, &mallory).await,
        Err(Error::Validation { .. })
    ));
    assert!(matches!(
        service.clear(&c1_cart, &mallory).await,
        Err(Error::Validation { .. })
    ));
    assert!(matches!(
        service.sign_in(&c1_cart, &c2).await,
        Err(Error::Validation { .. })
    ));
    redis.delete_all().await.expect("cleanup");
}

/// A saved address edited inside Redis past validation (an unknown country, a bare
/// string) is a permanent backend error on read, never an unvalidated `Address`; the
/// script's own writes round-trip exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_saved_address_is_refused_on_read() {
    use commerce_core::address::{Address, AddressInput};
    use commerce_core::cart::CartAddresses;

    let redis = common::single("tampered-address").await;
    let clock = Arc::new(ManualClock::default());
    let carts = RedisCarts::new(redis.clone(), clock.clone());
    let limits = CartLimits::default();
    let id = CartId::new_guest();
    let guest = CartOwner::Guest;
    carts
        .add_item(
            &id,
            &guest,
            item("A", 1, "1.00 USD", clock.as_ref()),
            &limits,
        )
        .await
        .expect("add");
    let address = Address::new(AddressInput {
        name: "  Zoë O'Brien ".into(),
        line1: "1 Main St".into(),
        line2: Some("Apt 4\u{2116}".into()),
        city: "Albany".into(),
        region: Some("ny".into()),
        postal_code: Some("12207".into()),
        country: "us".into(),
        phone: Some("+1 (518) 555-0100".into()),
        ..AddressInput::default()
    })
    .expect("valid");
    let saved = CartAddresses {
        shipping: Some(address.clone()),
        billing: Some(address),
    };
    let cart = carts
        .set_addresses(&id, &guest, saved.clone(), &limits)
        .await
        .expect("set addresses");
    assert_eq!(cart.addresses, saved);
    assert_eq!(
        carts
            .get_cart(&id, &guest)
            .await
            .expect("get")
            .map(|c| c.addresses),
        Some(saved)
    );
    let key = format!("{}:cart:{{{}}}", redis.prefix(), id);
    let mut conn = redis.connection();
    let stored: String = redis::cmd("HGET")
        .arg(&key)
        .arg("ship")
        .query_async(&mut conn)
        .await
        .expect("stored address");
    for tampered in [
        stored.replace(r#""country":"US""#, r#""country":"XX""#),
        stored.replace(r#""region":"NY""#, r#""region":"ZZ""#),
        "\"not an address\"".to_owned(),
    ] {
        assert_ne!(tampered, stored);
        redis::cmd("HSET")
            .arg(&key)
            .arg("bill")
            .arg(&tampered)
            .query_async::<()>(&mut conn)
            .await
            .expect("tamper");
        let err = carts.get_cart(&id, &guest).await.expect_err(&tampered);
        assert!(
            matches!(
                err,
                Error::Backend {
                    retryable: false,
                    ..
                }
            ),
            "{tampered}: {err:?}"
        );
    }
    redis.delete_all().await.expect("cleanup");
}
