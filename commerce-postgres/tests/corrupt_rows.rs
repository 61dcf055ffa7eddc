//! A row that breaks what the schema should guarantee (a negative counter, a negative
//! version) is a typed, non-retryable backend error naming the column, never read as 0.

mod common;

use std::sync::Arc;

use commerce_core::clock::ManualClock;
use commerce_core::id::{LocationId, Sku};
use commerce_core::store::InventoryStore;
use commerce_postgres::sqlx;

#[tokio::test(flavor = "multi_thread")]
async fn a_negative_counter_is_a_corrupt_row_error() {
    let builder = common::PgBuilder::default();
    let pg = builder
        .engine(Arc::new(ManualClock::new(ManualClock::EPOCH)))
        .await
        .expect("engine");
    let _guard = common::SchemaGuard(pg.schema().to_owned());
    let sku = Sku::new("A").expect("sku");
    pg.inventory
        .restock(&sku, &LocationId::new("w").expect("loc"), 5, "in")
        .await
        .expect("restock");
    let s = pg.schema();
    for statement in [
        format!("ALTER TABLE \"{s}\".stock_levels DROP CONSTRAINT stock_levels_available_check"),
        format!("UPDATE \"{s}\".stock_levels SET available = -1 WHERE sku = 'A'"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(pg.pool())
            .await
            .expect("corrupt the row");
    }
    let err = pg.inventory.stock(&sku).await.expect_err("corrupt row");
    assert!(
        matches!(&err, commerce_core::Error::Backend { retryable: false, message, .. }
            if message.contains("corrupt row") && message.contains("available")),
        "{err:?}"
    );
}

/// A cart body whose saved address was edited past validation (an unknown country) is
/// a typed, non-retryable error on read and on the next write, never an unvalidated
/// address; the row is left as it is.
#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_cart_address_is_a_corrupt_row_error() {
    use commerce_core::address::{Address, AddressInput};
    use commerce_core::cart::{CartAddresses, CartItem, CartLimits, CartOwner};
    use commerce_core::clock::Clock;
    use commerce_core::id::{CartId, ProductId};
    use commerce_core::store::CartStore;

    let clock = Arc::new(ManualClock::new(ManualClock::EPOCH));
    let builder = common::PgBuilder::default();
    let pg = builder.engine(clock.clone()).await.expect("engine");
    let _guard = common::SchemaGuard(pg.schema().to_owned());
    let id = CartId::new_guest();
    let limits = CartLimits::default();
    pg.carts
        .add_item(
            &id,
            &CartOwner::Guest,
            CartItem {
                product_id: ProductId::new("p").expect("id"),
                sku: Sku::new("A").expect("sku"),
                quantity: 1,
                unit_price: "1.00 USD".parse().expect("money"),
                added_at: clock.now(),
            },
            &limits,
        )
        .await
        .expect("add");
    let shipping = Address::new(AddressInput {
        name: "Erika".into(),
        line1: "Heidestraße 17".into(),
        city: "Köln".into(),
        postal_code: Some("51147".into()),
        country: "DE".into(),
        ..AddressInput::default()
    })
    .expect("valid");
    let saved = pg
        .carts
        .set_addresses(
            &id,
            &CartOwner::Guest,
            CartAddresses {
                shipping: Some(shipping),
                billing: None,
            },
            &limits,
        )
        .await
        .expect("set addresses");
    assert_eq!(
        pg.carts
            .get_cart(&id, &CartOwner::Guest)
            .await
            .expect("read"),
        Some(saved)
    );
    let s = pg.schema();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE \"{s}\".carts SET body = jsonb_set(body, '{{addresses,shipping,country}}', '\"XX\"') WHERE id = $1"
    )))
    .bind(id.as_str())
    .execute(pg.pool())
    .await
    .expect("tamper with the address");
    let corrupt = |err: &commerce_core::Error| {
        matches!(
            err,
            commerce_core::Error::Backend {
                retryable: false,
                ..
            }
        )
    };
    let err = pg
        .carts
        .get_cart(&id, &CartOwner::Guest)
        .await
        .expect_err("a tampered address must not be read");
    assert!(corrupt(&err), "{err:?}");
    let err = pg
        .carts
        .set_addresses(&id, &CartOwner::Guest, CartAddresses::default(), &limits)
        .await
        .expect_err("a write on a tampered cart");
    assert!(corrupt(&err), "{err:?}");
    let country: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT body #>> '{{addresses,shipping,country}}' FROM \"{s}\".carts WHERE id = $1"
    )))
    .bind(id.as_str())
    .fetch_one(pg.pool())
    .await
    .expect("read the row");
    assert_eq!(country, "XX", "the failed write changed nothing");
}
