//! The [`CartStore`](crate::store::CartStore) suite.
//!
//! Every write is compared with the reference rules of [`Cart`] applied to the cart read
//! before it. Checks: a new cart starts at version 1 with `expires_at = now + ttl`; every
//! write bumps the version by one and slides the expiry; SKU lines merge and take the new
//! price snapshot; limits, zero quantities, negative prices and mixed currencies fail and
//! change nothing (a failed first write creates no cart); `NotFound { Cart }` /
//! `NotFound { CartItem }`; `clear_cart` is idempotent; ownership isolation (another
//! owner sees `None`, gets `NotFound`, cannot clear, cannot merge someone else's cart);
//! expiry exactly at `expires_at`, with the expired id reusable; the merge policy
//! (caps, line limits, later snapshot wins, other currencies dropped) and its
//! missing/expired-guest cases; concurrent merges merge once; N concurrent `add_item`
//! calls all count (same line and distinct lines) and concurrent adds respect the line
//! limit exactly; `list_abandoned` lists live, non-empty carts untouched since a time,
//! oldest first, within its limit, and skips expired, empty and since-touched carts.
//! Saved addresses: `set_addresses` round-trips every field exactly (guest and customer
//! carts, set, replace, clear), bumps the version and slides the expiry like any write,
//! leaves the lines alone, is `NotFound { Cart }` with nothing written for a missing,
//! expired or foreign cart; invalid or hostile address input cannot be built or
//! deserialised at all; a merge keeps the customer's addresses or takes the guest's as a
//! pair; concurrent address and line writes all count.

use std::collections::BTreeMap;
use std::time::Duration;

use super::builder::{Area, StoreBuilder};
use super::check::{assert_err, concurrently, must};
use super::fixtures::{address, address_input, cart_item, cust, sku};
use super::runner::{Case, Ctx, Env, Settings, cases, run_one_area};
use crate::address::{Address, AddressInput};
use crate::cart::{Cart, CartAddresses, CartLimits, CartOwner, MergeReport};
use crate::error::{EntityKind, Error};
use crate::id::{CartId, Sku};

/// Runs every cart case against `builder`'s stores; panics listing the failed cases.
pub async fn test_all<B: StoreBuilder>(builder: &B) {
    test_all_with(builder, &Settings::from_env()).await;
}

/// [`test_all`] with explicit [`Settings`].
pub async fn test_all_with<B: StoreBuilder>(builder: &B, settings: &Settings) {
    run_one_area(builder, settings, Area::Carts, cases()).await;
}

pub(crate) fn cases() -> Vec<Case> {
    cases![
        add_item_creates_the_cart,
        writes_follow_the_reference_rules,
        failed_writes_change_nothing,
        missing_carts_and_lines_are_not_found,
        clear_cart_is_idempotent,
        carts_are_invisible_to_other_owners,
        carts_expire_with_the_clock,
        every_write_slides_the_expiry,
        merge_follows_the_policy,
        merge_into_a_missing_customer_cart,
        merge_without_a_live_guest_cart_changes_nothing,
        merge_drops_lines_in_another_currency,
        concurrent_merges_merge_once,
        concurrent_adds_to_one_line_all_count,
        concurrent_adds_of_distinct_lines_all_count,
        concurrent_adds_respect_the_line_limit,
        abandoned_carts_are_listed_oldest_first,
        abandoned_lists_skip_expired_empty_and_touched_carts,
        abandoned_list_limits_are_checked,
        addresses_are_saved_and_read_back_exactly,
        addresses_need_a_live_cart_of_the_owner,
        invalid_addresses_cannot_be_built,
        merge_keeps_or_takes_addresses_as_a_pair,
        concurrent_address_and_line_writes_all_count,
    ]
}

fn guest() -> CartOwner {
    CartOwner::Guest
}

fn customer(c: &str) -> CartOwner {
    CartOwner::Customer(cust(c))
}

async fn get(ctx: &Ctx, id: &CartId, owner: &CartOwner) -> Option<Cart> {
    must!(
        ctx.carts().get_cart(id, owner).await,
        "get_cart({id}, {owner:?})"
    )
}

async fn add_item_creates_the_cart(env: Env<'_>) {
    let ctx = env.ctx().await;
    let limits = CartLimits::default();
    let id = CartId::new_guest();
    ctx.advance(Duration::from_secs(3));
    let now = ctx.now();
    let item = cart_item("A", 2, "1.50 USD", now);
    let cart = must!(
        ctx.carts()
            .add_item(&id, &guest(), item.clone(), &limits)
            .await,
        "add_item to a new cart"
    );
    let mut expected = Cart::new(id.clone(), guest(), now, &limits);
    must!(expected.add_item(item, now, &limits), "reference add_item");
    assert_eq!(
        cart, expected,
        "a cart created by add_item: the line, version 1, created_at = updated_at = now, expires_at = now + ttl"
    );
    assert_eq!(cart.version, 1, "a new cart starts at version 1");
    assert_eq!(get(&ctx, &id, &guest()).await, Some(expected));
}

async fn writes_follow_the_reference_rules(env: Env<'_>) {
    let ctx = env.ctx().await;
    let carts = ctx.carts();
    let limits = CartLimits {
        max_line_quantity: 20,
        max_lines: 4,
        ttl: Duration::from_secs(3600),
    };
    let id = CartId::for_customer(&cust("c1"));
    let owner = customer("c1");
    let mut reference: Option<Cart> = None;
    let steps: Vec<(&str, &str, u32, &str)> = vec![
        ("add", "A", 2, "1.50 USD"),
        ("add", "B", 1, "3.00 USD"),
        ("add", "A", 3, "1.25 USD"),
        ("set", "B", 7, ""),
        ("add", "C", 1, "0.00 USD"),
        ("remove", "A", 0, ""),
        ("set", "C", 0, ""),
        ("add", "A", 1, "9.99 USD"),
        ("set", "B", 20, ""),
    ];
    for (n, (op, s, q, price)) in steps.into_iter().enumerate() {
        ctx.advance(Duration::from_secs(10));
        let now = ctx.now();
        let mut expected = reference
            .clone()
            .unwrap_or_else(|| Cart::new(id.clone(), owner.clone(), now, &limits));
        let got = match op {
            "add" => {
                let item = cart_item(s, q, price, now);
                must!(expected.add_item(item.clone(), now, &limits), "reference");
                carts.add_item(&id, &owner, item, &limits).await
            }
            "set" => {
                must!(expected.set_quantity(&sku(s), q, now, &limits), "reference");
                carts.set_quantity(&id, &owner, &sku(s), q, &limits).await
            }
            _ => {
                must!(expected.remove_item(&sku(s), now, &limits), "reference");
                carts.remove_item(&id, &owner, &sku(s), &limits).await
            }
        };
        let got = must!(got, "step {n}: {op} {s} {q}");
        assert_eq!(
            got, expected,
            "step {n} ({op} {s} {q}) must give what the Cart rules give"
        );
        assert_eq!(get(&ctx, &id, &owner).await.as_ref(), Some(&expected));
        reference = Some(expected);
    }
    let last = reference.expect("steps ran");
    assert_eq!(last.version, 9, "nine writes, nine versions");
    assert!(last.item(&sku("C")).is_none() && last.items.len() == 2);
}

async fn failed_writes_change_nothing(env: Env<'_>) {
    let ctx = env.ctx().await;
    let carts = ctx.carts();
    let limits = CartLimits {
        max_line_quantity: 5,
        max_lines: 2,
        ..CartLimits::default()
    };
    let id = CartId::new_guest();
    let now = ctx.now();
    assert_err!(
        carts
            .add_item(&id, &guest(), cart_item("A", 6, "1.00 USD", now), &limits)
            .await,
        Error::Validation { .. },
        "add_item over the line limit on a new cart"
    );
    assert_eq!(
        get(&ctx, &id, &guest()).await,
        None,
        "a failed first write must not create the cart"
    );
    let before = must!(
        carts
            .add_item(&id, &guest(), cart_item("A", 3, "1.00 USD", now), &limits)
            .await,
        "add A"
    );
    ctx.advance(Duration::from_secs(30));
    let now = ctx.now();
    let failures: Vec<(&str, crate::Result<Cart>)> = vec![
        (
            "merging past the line limit",
            carts
                .add_item(&id, &guest(), cart_item("A", 3, "1.00 USD", now), &limits)
                .await,
        ),
        (
            "a zero quantity",
            carts
                .add_item(&id, &guest(), cart_item("B", 0, "1.00 USD", now), &limits)
                .await,
        ),
        (
            "a negative price",
            carts
                .add_item(&id, &guest(), cart_item("B", 1, "-1.00 USD", now), &limits)
                .await,
        ),
        (
            "set_quantity past the line limit",
            carts
                .set_quantity(&id, &guest(), &sku("A"), 6, &limits)
                .await,
        ),
    ];
    for (what, result) in failures {
        assert_err!(result, Error::Validation { .. }, "add_item with {what}");
    }
    assert_err!(
        carts
            .add_item(&id, &guest(), cart_item("B", 1, "1.00 EUR", now), &limits)
            .await,
        Error::CurrencyMismatch { .. },
        "add_item in another currency"
    );
    must!(
        carts
            .add_item(&id, &guest(), cart_item("B", 1, "1.00 USD", now), &limits)
            .await,
        "add B"
    );
    let full = get(&ctx, &id, &guest()).await;
    assert_err!(
        carts
            .add_item(&id, &guest(), cart_item("C", 1, "1.00 USD", now), &limits)
            .await,
        Error::Validation { .. },
        "add_item to a full cart"
    );
    assert_eq!(
        get(&ctx, &id, &guest()).await,
        full,
        "a refused add_item to a full cart changed it"
    );
    let after = full.expect("cart exists");
    assert_eq!(
        after.version,
        before.version + 1,
        "only the successful write may bump the version"
    );
    assert_eq!(after.item(&sku("A")), before.item(&sku("A")));
}

async fn missing_carts_and_lines_are_not_found(env: Env<'_>) {
    let ctx = env.ctx().await;
    let carts = ctx.carts();
    let limits = CartLimits::default();
    let id = CartId::new_guest();
    assert_eq!(get(&ctx, &id, &guest()).await, None);
    assert_err!(
        carts
            .set_quantity(&id, &guest(), &sku("A"), 1, &limits)
            .await,
        Error::NotFound {
            kind: EntityKind::Cart,
            ..
        },
        "set_quantity on a missing cart"
    );
    assert_err!(
        carts.remove_item(&id, &guest(), &sku("A"), &limits).await,
        Error::NotFound {
            kind: EntityKind::Cart,
            ..
        },
        "remove_item on a missing cart"
    );
    assert_eq!(
        get(&ctx, &id, &guest()).await,
        None,
        "set_quantity/remove_item must not create a cart"
    );
    let cart = must!(
        carts
            .add_item(
                &id,
                &guest(),
                cart_item("A", 1, "1.00 USD", ctx.now()),
                &limits
            )
            .await,
        "add A"
    );
    assert_err!(
        carts
            .set_quantity(&id, &guest(), &sku("Z"), 1, &limits)
            .await,
        Error::NotFound {
            kind: EntityKind::CartItem,
            ..
        },
        "set_quantity of a missing line"
    );
    assert_err!(
        carts.remove_item(&id, &guest(), &sku("Z"), &limits).await,
        Error::NotFound {
            kind: EntityKind::CartItem,
            ..
        },
        "remove_item of a missing line"
    );
    assert_eq!(get(&ctx, &id, &guest()).await, Some(cart));
    let emptied = must!(
        carts.remove_item(&id, &guest(), &sku("A"), &limits).await,
        "remove the last line"
    );
    assert!(emptied.items.is_empty());
    assert_eq!(
        get(&ctx, &id, &guest()).await,
        Some(emptied),
        "a cart whose last line was removed still exists (empty)"
    );
}

async fn clear_cart_is_idempotent(env: Env<'_>) {
    let ctx = env.ctx().await;
    let carts = ctx.carts();
    let limits = CartLimits::default();
    let id = CartId::new_guest();
    must!(
        carts.clear_cart(&id, &guest()).await,
        "clearing a cart that never existed"
    );
    must!(
        carts
            .add_item(
                &id,
                &guest(),
                cart_item("A", 1, "1.00 USD", ctx.now()),
                &limits
            )
            .await,
        "add"
    );
    must!(carts.clear_cart(&id, &guest()).await, "clear");
    assert_eq!(
        get(&ctx, &id, &guest()).await,
        None,
        "clear_cart must delete the cart"
    );
    must!(carts.clear_cart(&id, &guest()).await, "clearing twice");
    let fresh = must!(
        carts
            .add_item(
                &id,
                &guest(),
                cart_item("B", 1, "1.00 USD", ctx.now()),
                &limits
            )
            .await,
        "add after clear"
    );
    assert_eq!(
        (fresh.items.len(), fresh.version),
        (1, 1),
        "a cart created after clear_cart starts afresh"
    );
}

async fn carts_are_invisible_to_other_owners(env: Env<'_>) {
    let ctx = env.ctx().await;
    let carts = ctx.carts();
    let limits = CartLimits::default();
    let now = ctx.now();
    let g = CartId::new_guest();
    let guest_cart = must!(
        carts
            .add_item(&g, &guest(), cart_item("A", 2, "1.00 USD", now), &limits)
            .await,
        "guest add"
    );
    let c1 = CartId::for_customer(&cust("c1"));
    let c1_cart = must!(
        carts
            .add_item(
                &c1,
                &customer("c1"),
                cart_item("B", 3, "1.00 USD", now),
                &limits
            )
            .await,
        "customer add"
    );
    let probes: [(&CartId, CartOwner); 4] = [
        (&g, customer("c1")),
        (&c1, customer("c2")),
        (&c1, guest()),
        (&g, customer("c2")),
    ];
    for (id, other) in probes {
        assert_eq!(
            get(&ctx, id, &other).await,
            None,
            "get_cart({id}) by {other:?} must behave as if the cart did not exist"
        );
        assert_err!(
            carts.set_quantity(id, &other, &sku("A"), 1, &limits).await,
            Error::NotFound {
                kind: EntityKind::Cart,
                ..
            },
            "set_quantity on {id} by {other:?}"
        );
        assert_err!(
            carts.remove_item(id, &other, &sku("B"), &limits).await,
            Error::NotFound {
                kind: EntityKind::Cart,
                ..
            },
            "remove_item on {id} by {other:?}"
        );
        assert_err!(
            carts
                .add_item(id, &other, cart_item("X", 1, "1.00 USD", now), &limits)
                .await,
            Error::NotFound {
                kind: EntityKind::Cart,
                ..
            },
            "add_item to {id} (a live cart of someone else) by {other:?}"
        );
        must!(
            carts.clear_cart(id, &other).await,
            "clear_cart by another owner"
        );
    }
    // Customer c2 names c1's cart as its "guest" cart: nothing may move.
    let (c2_cart, report) = must!(
        carts
            .merge_carts(&c1, &cust("c2"), &BTreeMap::new(), &limits)
            .await,
        "merge_carts of another customer's cart"
    );
    assert!(
        c2_cart.items.is_empty() && report == MergeReport::default(),
        "merging a cart that is not a guest cart must merge nothing, got {c2_cart:?}"
    );
    assert_eq!(
        get(&ctx, &g, &guest()).await,
        Some(guest_cart),
        "the guest cart changed"
    );
    assert_eq!(
        get(&ctx, &c1, &customer("c1")).await,
        Some(c1_cart),
        "the customer cart changed"
    );
}

async fn carts_expire_with_the_clock(env: Env<'_>) {
    let ctx = env.ctx().await;
    let carts = ctx.carts();
    let limits = CartLimits {
        ttl: Duration::from_secs(3600),
        ..CartLimits::default()
    };
    let id = CartId::new_guest();
    let cart = must!(
        carts
            .add_item(
                &id,
                &guest(),
                cart_item("A", 2, "1.00 USD", ctx.now()),
                &limits
            )
            .await,
        "add"
    );
    ctx.advance(Duration::from_secs(3599));
    assert_eq!(
        get(&ctx, &id, &guest()).await,
        Some(cart.clone()),
        "alive 1 s before expiry"
    );
    ctx.advance(Duration::from_secs(1));
    assert_eq!(ctx.now(), cart.expires_at);
    assert_eq!(
        get(&ctx, &id, &guest()).await,
        None,
        "a cart whose expires_at is now does not exist"
    );
    assert_err!(
        carts
            .set_quantity(&id, &guest(), &sku("A"), 1, &limits)
            .await,
        Error::NotFound {
            kind: EntityKind::Cart,
            ..
        },
        "set_quantity on an expired cart"
    );
    assert_err!(
        carts.remove_item(&id, &guest(), &sku("A"), &limits).await,
        Error::NotFound {
            kind: EntityKind::Cart,
            ..
        },
        "remove_item on an expired cart"
    );
    let now = ctx.now();
    let fresh = must!(
        carts
            .add_item(&id, &guest(), cart_item("B", 1, "1.00 USD", now), &limits)
            .await,
        "add_item after expiry"
    );
    let mut expected = Cart::new(id.clone(), guest(), now, &limits);
    must!(
        expected.add_item(cart_item("B", 1, "1.00 USD", now), now, &limits),
        "reference"
    );
    assert_eq!(
        fresh, expected,
        "add_item on an expired cart creates a new cart (the old lines are gone)"
    );
    // An expired customer cart id can be taken again by its owner only after expiry.
    let c = CartId::for_customer(&cust("c9"));
    must!(
        carts
            .add_item(
                &c,
                &customer("c9"),
                cart_item("A", 1, "1.00 USD", now),
                &limits
            )
            .await,
        "customer add"
    );
    ctx.advance(Duration::from_secs(3600));
    let taken = must!(
        carts
            .add_item(
                &c,
                &guest(),
                cart_item("C", 1, "1.00 USD", ctx.now()),
                &limits
            )
            .await,
        "add_item by another owner after expiry"
    );
    assert_eq!(taken.owner, guest());
    assert_eq!(get(&ctx, &c, &customer("c9")).await, None);
}

async fn every_write_slides_the_expiry(env: Env<'_>) {
    let ctx = env.ctx().await;
    let carts = ctx.carts();
    let limits = CartLimits {
        ttl: Duration::from_secs(3600),
        ..CartLimits::default()
    };
    let id = CartId::new_guest();
    must!(
        carts
            .add_item(
                &id,
                &guest(),
                cart_item("A", 1, "1.00 USD", ctx.now()),
                &limits
            )
            .await,
        "add"
    );
    for (n, write) in ["add", "set", "add", "remove"].into_iter().enumerate() {
        ctx.advance(Duration::from_secs(45 * 60));
        let now = ctx.now();
        let cart = match write {
            "add" => {
                carts
                    .add_item(&id, &guest(), cart_item("B", 1, "1.00 USD", now), &limits)
                    .await
            }
            "set" => {
                carts
                    .set_quantity(&id, &guest(), &sku("A"), 3, &limits)
                    .await
            }
            _ => carts.remove_item(&id, &guest(), &sku("B"), &limits).await,
        };
        let cart = must!(
            cart,
            "write {n} ({write}) 45 minutes after the previous one"
        );
        assert_eq!(
            (cart.updated_at, cart.expires_at),
            (now, now + chrono::Duration::seconds(3600)),
            "{write} must set updated_at = now and expires_at = now + ttl"
        );
    }
}

/// Reads both carts, merges in the store and checks against [`Cart::merge_from`].
async fn checked_merge(
    ctx: &Ctx,
    guest_id: &CartId,
    customer_id: &str,
    caps: &BTreeMap<Sku, u32>,
    limits: &CartLimits,
) -> (Cart, MergeReport) {
    let owner = customer(customer_id);
    let target_id = CartId::for_customer(&cust(customer_id));
    let guest_cart = get(ctx, guest_id, &guest())
        .await
        .expect("guest cart exists");
    let now = ctx.now();
    let mut expected = get(ctx, &target_id, &owner)
        .await
        .unwrap_or_else(|| Cart::new(target_id.clone(), owner.clone(), now, limits));
    let expected_report = expected.merge_from(&guest_cart, caps, now, limits);
    let (merged, report) = must!(
        ctx.carts()
            .merge_carts(guest_id, &cust(customer_id), caps, limits)
            .await,
        "merge_carts"
    );
    assert_eq!(
        merged, expected,
        "merge_carts must give the cart Cart::merge_from gives"
    );
    assert_eq!(
        report, expected_report,
        "merge_carts must report as Cart::merge_from"
    );
    assert_eq!(
        get(ctx, guest_id, &guest()).await,
        None,
        "the guest cart must be gone after a merge"
    );
    assert_eq!(get(ctx, &target_id, &owner).await.as_ref(), Some(&merged));
    (merged, report)
}

async fn merge_follows_the_policy(env: Env<'_>) {
    let ctx = env.ctx().await;
    let carts = ctx.carts();
    let t0 = ctx.now();
    let limits = CartLimits {
        max_line_quantity: 10,
        max_lines: 3,
        ..CartLimits::default()
    };
    let roomy = CartLimits::default();
    let c = CartId::for_customer(&cust("c1"));
    let g = CartId::new_guest();
    must!(
        carts
            .add_item(
                &c,
                &customer("c1"),
                cart_item("A", 6, "2.00 USD", t0),
                &limits
            )
            .await,
        "customer A"
    );
    must!(
        carts
            .add_item(&g, &guest(), cart_item("B", 1, "9.00 USD", t0), &roomy)
            .await,
        "guest B (older snapshot)"
    );
    ctx.advance(Duration::from_secs(60));
    let t1 = ctx.now();
    must!(
        carts
            .add_item(
                &c,
                &customer("c1"),
                cart_item("B", 1, "3.00 USD", t1),
                &limits
            )
            .await,
        "customer B"
    );
    for (s, q) in [("A", 6), ("C", 4), ("D", 1), ("E", 2)] {
        must!(
            carts
                .add_item(&g, &guest(), cart_item(s, q, "1.50 USD", t1), &roomy)
                .await,
            "guest {s}"
        );
    }
    ctx.advance(Duration::from_secs(60));
    let caps = BTreeMap::from([(sku("C"), 2), (sku("E"), 0)]);
    let (merged, report) = checked_merge(&ctx, &g, "c1", &caps, &limits).await;
    // Spelled out, in case Cart::merge_from itself regresses.
    let line = |s: &str| {
        merged
            .item(&sku(s))
            .map(|i| (i.quantity, i.unit_price.to_string()))
    };
    assert_eq!(
        line("A"),
        Some((10, "1.50 USD".into())),
        "A: 6 + 6 capped at 10, later price"
    );
    assert_eq!(
        line("B"),
        Some((2, "3.00 USD".into())),
        "B: the customer's later snapshot wins"
    );
    assert_eq!(
        line("C"),
        Some((2, "1.50 USD".into())),
        "C: capped by availability"
    );
    assert_eq!(line("D"), None, "D: the cart is full (3 lines)");
    assert_eq!(report.capped, vec![sku("A"), sku("C")]);
    assert_eq!(report.dropped, vec![sku("D"), sku("E")]);
}

async fn merge_into_a_missing_customer_cart(env: Env<'_>) {
    let ctx = env.ctx().await;
    let limits = CartLimits::default();
    let g = CartId::new_guest();
    for (s, q) in [("A", 3), ("B", 5)] {
        must!(
            ctx.carts()
                .add_item(
                    &g,
                    &guest(),
                    cart_item(s, q, "1.00 USD", ctx.now()),
                    &limits
                )
                .await,
            "guest {s}"
        );
    }
    ctx.advance(Duration::from_secs(5));
    let caps = BTreeMap::from([(sku("B"), 4)]);
    let (merged, report) = checked_merge(&ctx, &g, "c1", &caps, &limits).await;
    assert_eq!(merged.owner, customer("c1"));
    assert_eq!(merged.id, CartId::for_customer(&cust("c1")));
    assert_eq!(report.capped, vec![sku("B")]);
}

async fn merge_without_a_live_guest_cart_changes_nothing(env: Env<'_>) {
    let ctx = env.ctx().await;
    let carts = ctx.carts();
    let limits = CartLimits {
        ttl: Duration::from_secs(600),
        ..CartLimits::default()
    };
    let no_caps = BTreeMap::new();
    // No customer cart, no guest cart: an empty customer cart, an empty report.
    let (empty, report) = must!(
        carts
            .merge_carts(&CartId::new_guest(), &cust("c0"), &no_caps, &limits)
            .await,
        "merge of a missing guest cart into a missing customer cart"
    );
    assert!(empty.items.is_empty() && report == MergeReport::default());
    assert_eq!(
        (empty.owner.clone(), empty.id.clone()),
        (customer("c0"), CartId::for_customer(&cust("c0")))
    );
    assert_eq!(
        empty.version, 0,
        "the empty answer is not a stored cart: version 0, as Cart::new"
    );
    assert_eq!(
        must!(
            carts
                .get_cart(&CartId::for_customer(&cust("c0")), &customer("c0"))
                .await,
            "get_cart after an empty merge"
        ),
        None,
        "a merge with nothing to merge stores no customer cart"
    );
    // An existing customer cart is returned unchanged.
    let c = CartId::for_customer(&cust("c1"));
    let g = CartId::new_guest();
    must!(
        carts
            .add_item(
                &g,
                &guest(),
                cart_item("G", 1, "1.00 USD", ctx.now()),
                &limits
            )
            .await,
        "guest add"
    );
    ctx.advance(Duration::from_secs(300));
    let before = must!(
        carts
            .add_item(
                &c,
                &customer("c1"),
                cart_item("A", 2, "1.00 USD", ctx.now()),
                &limits
            )
            .await,
        "customer add"
    );
    for (what, guest_id) in [
        ("a missing", CartId::new_guest()),
        ("an expired", g.clone()),
    ] {
        if what == "an expired" {
            ctx.advance(Duration::from_secs(300));
        }
        let (cart, report) = must!(
            carts
                .merge_carts(&guest_id, &cust("c1"), &no_caps, &limits)
                .await,
            "merge of {what} guest cart"
        );
        assert_eq!(
            cart, before,
            "merging {what} guest cart must return the customer cart unchanged"
        );
        assert_eq!(report, MergeReport::default());
        assert_eq!(get(&ctx, &c, &customer("c1")).await, Some(before.clone()));
    }
}

async fn merge_drops_lines_in_another_currency(env: Env<'_>) {
    let ctx = env.ctx().await;
    let carts = ctx.carts();
    let limits = CartLimits::default();
    let c = CartId::for_customer(&cust("c1"));
    let g = CartId::new_guest();
    must!(
        carts
            .add_item(
                &c,
                &customer("c1"),
                cart_item("A", 1, "1.00 USD", ctx.now()),
                &limits
            )
            .await,
        "customer add"
    );
    for s in ["A", "B"] {
        must!(
            carts
                .add_item(
                    &g,
                    &guest(),
                    cart_item(s, 2, "5.00 EUR", ctx.now()),
                    &limits
                )
                .await,
            "guest add"
        );
    }
    ctx.advance(Duration::from_secs(1));
    let (merged, report) = checked_merge(&ctx, &g, "c1", &BTreeMap::new(), &limits).await;
    assert_eq!(
        report.dropped,
        vec![sku("A"), sku("B")],
        "guest lines in another currency are dropped, even for a SKU the customer has"
    );
    assert_eq!(
        merged.item(&sku("A")).map(|i| i.quantity),
        Some(1),
        "a line in another currency must not add to the customer's line"
    );
    assert!(
        merged
            .items
            .iter()
            .all(|i| i.unit_price.currency().code() == "USD"),
        "a merged cart holds one currency"
    );
}

async fn concurrent_merges_merge_once(env: Env<'_>) {
    let ctx = env.ctx().await;
    let carts = ctx.carts();
    let limits = CartLimits::default();
    let c = CartId::for_customer(&cust("c1"));
    let g = CartId::new_guest();
    let before = must!(
        carts
            .add_item(
                &c,
                &customer("c1"),
                cart_item("A", 1, "1.00 USD", ctx.now()),
                &limits
            )
            .await,
        "customer add"
    );
    must!(
        carts
            .add_item(
                &g,
                &guest(),
                cart_item("A", 3, "1.00 USD", ctx.now()),
                &limits
            )
            .await,
        "guest add"
    );
    ctx.advance(Duration::from_secs(1));
    let results = concurrently(8, |_| {
        let carts = carts.clone();
        let g = g.clone();
        async move {
            carts
                .merge_carts(&g, &cust("c1"), &BTreeMap::new(), &CartLimits::default())
                .await
        }
    })
    .await;
    for r in &results {
        must!(r.as_ref(), "concurrent merge_carts");
    }
    let after = get(&ctx, &c, &customer("c1")).await.expect("customer cart");
    assert_eq!(
        after.item(&sku("A")).map(|i| i.quantity),
        Some(4),
        "8 concurrent merges of one guest cart must merge it exactly once"
    );
    assert_eq!(
        after.version,
        before.version + 1,
        "exactly one merge writes"
    );
    assert_eq!(get(&ctx, &g, &guest()).await, None);
}

async fn concurrent_adds_to_one_line_all_count(env: Env<'_>) {
    let ctx = env.ctx().await;
    let carts = ctx.carts();
    let n = 40usize;
    let id = CartId::new_guest();
    let now = ctx.now();
    let results = concurrently(n, |_| {
        let carts = carts.clone();
        let id = id.clone();
        async move {
            let limits = CartLimits {
                max_line_quantity: 1000,
                ..CartLimits::default()
            };
            carts
                .add_item(
                    &id,
                    &CartOwner::Guest,
                    cart_item("A", 1, "1.00 USD", now),
                    &limits,
                )
                .await
        }
    })
    .await;
    for r in &results {
        must!(r.as_ref(), "concurrent add_item");
    }
    let cart = get(&ctx, &id, &guest()).await.expect("cart exists");
    assert_eq!(
        (cart.item(&sku("A")).map(|i| i.quantity), cart.version),
        (Some(n as u32), n as u64),
        "{n} concurrent add_item calls of one unit must give {n} units and version {n} (no lost update)"
    );
}

async fn concurrent_adds_of_distinct_lines_all_count(env: Env<'_>) {
    let ctx = env.ctx().await;
    let carts = ctx.carts();
    let n = 30usize;
    let id = CartId::for_customer(&cust("c1"));
    let now = ctx.now();
    let results = concurrently(n, |i| {
        let carts = carts.clone();
        let id = id.clone();
        async move {
            carts
                .add_item(
                    &id,
                    &CartOwner::Customer(cust("c1")),
                    cart_item(&format!("S-{i}"), 1 + (i % 3) as u32, "2.00 USD", now),
                    &CartLimits::default(),
                )
                .await
        }
    })
    .await;
    for r in &results {
        must!(r.as_ref(), "concurrent add_item");
    }
    let cart = get(&ctx, &id, &customer("c1")).await.expect("cart exists");
    assert_eq!(
        cart.items.len(),
        n,
        "every concurrently added line must be there"
    );
    for i in 0..n {
        assert_eq!(
            cart.item(&sku(&format!("S-{i}"))).map(|l| l.quantity),
            Some(1 + (i % 3) as u32)
        );
    }
    assert_eq!(cart.version, n as u64);
}

async fn concurrent_adds_respect_the_line_limit(env: Env<'_>) {
    let ctx = env.ctx().await;
    let carts = ctx.carts();
    let id = CartId::new_guest();
    let now = ctx.now();
    let results = concurrently(24, |_| {
        let carts = carts.clone();
        let id = id.clone();
        async move {
            let limits = CartLimits {
                max_line_quantity: 10,
                ..CartLimits::default()
            };
            carts
                .add_item(
                    &id,
                    &CartOwner::Guest,
                    cart_item("A", 1, "1.00 USD", now),
                    &limits,
                )
                .await
        }
    })
    .await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(e, Error::Validation { .. }),
                "an add past the line limit must be a validation error, got {e:?}"
            );
        }
    }
    assert_eq!(
        ok, 10,
        "exactly 10 of 24 concurrent single-unit adds fit a 10-unit line"
    );
    let cart = get(&ctx, &id, &guest()).await.expect("cart");
    assert_eq!(cart.item(&sku("A")).map(|i| i.quantity), Some(10));
    assert_eq!(cart.version, 10);
}

/// Adds one line to a new cart of `owner` at the current time.
async fn cart_at(ctx: &Ctx, id: &CartId, owner: &CartOwner, limits: &CartLimits) -> Cart {
    must!(
        ctx.carts()
            .add_item(id, owner, cart_item("A", 1, "1.00 USD", ctx.now()), limits)
            .await,
        "add_item to {id}"
    )
}

async fn abandoned(ctx: &Ctx, since: crate::clock::Timestamp, limit: u32) -> Vec<Cart> {
    must!(
        ctx.carts().list_abandoned(since, limit).await,
        "list_abandoned({since}, {limit})"
    )
}

async fn abandoned_carts_are_listed_oldest_first(env: Env<'_>) {
    let ctx = env.ctx().await;
    let limits = CartLimits::default();
    let first = cart_at(&ctx, &CartId::new_guest(), &guest(), &limits).await;
    ctx.advance(Duration::from_secs(60));
    let second = cart_at(
        &ctx,
        &CartId::for_customer(&cust("c1")),
        &customer("c1"),
        &limits,
    )
    .await;
    ctx.advance(Duration::from_secs(60));
    let third = cart_at(&ctx, &CartId::new_guest(), &guest(), &limits).await;
    let since = ctx.now();
    ctx.advance(Duration::from_secs(60));
    let _fresh = cart_at(&ctx, &CartId::new_guest(), &guest(), &limits).await;
    ctx.advance(Duration::from_secs(60));

    assert_eq!(
        abandoned(&ctx, since, 10).await,
        vec![first.clone(), second.clone(), third.clone()],
        "carts written at or before `since`, oldest first, any owner, as stored"
    );
    assert_eq!(
        abandoned(&ctx, since, 2).await,
        vec![first.clone(), second.clone()],
        "at most `limit`, the oldest"
    );
    assert_eq!(
        abandoned(&ctx, second.updated_at, 10).await,
        vec![first.clone(), second],
        "a cart written exactly at `since` is listed"
    );
    let before_first = first.updated_at - chrono::Duration::seconds(1);
    assert_eq!(
        abandoned(&ctx, before_first, 10).await,
        Vec::<Cart>::new(),
        "nothing was written before the first cart"
    );
}

async fn abandoned_lists_skip_expired_empty_and_touched_carts(env: Env<'_>) {
    let ctx = env.ctx().await;
    let carts = ctx.carts();
    let short = CartLimits {
        ttl: Duration::from_secs(100),
        ..CartLimits::default()
    };
    let long = CartLimits::default();
    let expiring = CartId::new_guest();
    cart_at(&ctx, &expiring, &guest(), &short).await;
    let emptied = CartId::new_guest();
    cart_at(&ctx, &emptied, &guest(), &long).await;
    must!(
        carts
            .remove_item(&emptied, &guest(), &sku("A"), &long)
            .await,
        "empty the cart"
    );
    let touched = CartId::new_guest();
    cart_at(&ctx, &touched, &guest(), &long).await;
    let kept = cart_at(&ctx, &CartId::new_guest(), &guest(), &long).await;
    let since = ctx.now();
    ctx.advance(Duration::from_secs(100));
    must!(
        carts
            .add_item(
                &touched,
                &guest(),
                cart_item("B", 1, "1.00 USD", ctx.now()),
                &long
            )
            .await,
        "touch a cart after `since`"
    );
    assert_eq!(
        abandoned(&ctx, since, 10).await,
        vec![kept],
        "an expired cart (expires_at = now), an empty cart and a cart written after `since` are not abandoned"
    );
}

async fn abandoned_list_limits_are_checked(env: Env<'_>) {
    let ctx = env.ctx().await;
    let now = ctx.now();
    assert_err!(
        ctx.carts().list_abandoned(now, 0).await,
        Error::Validation { .. },
        "limit 0"
    );
    assert_err!(
        ctx.carts()
            .list_abandoned(now, crate::store::MAX_PAGE_SIZE + 1)
            .await,
        Error::Validation { .. },
        "a limit above MAX_PAGE_SIZE"
    );
}

/// Sets `addresses` in the store and checks the answer and the stored cart against
/// [`Cart::set_addresses`] on the cart read before.
async fn checked_set_addresses(
    ctx: &Ctx,
    id: &CartId,
    owner: &CartOwner,
    addresses: CartAddresses,
    limits: &CartLimits,
    what: &str,
) -> Cart {
    let before = get(ctx, id, owner).await.expect("the cart exists");
    let now = ctx.now();
    let mut expected = before.clone();
    expected.set_addresses(addresses.clone(), now, limits);
    let got = must!(
        ctx.carts()
            .set_addresses(id, owner, addresses.clone(), limits)
            .await,
        "set_addresses ({what})"
    );
    assert_eq!(
        got, expected,
        "set_addresses ({what}) must give what Cart::set_addresses gives: the addresses, version + 1, updated_at = now, expires_at = now + ttl, the lines untouched"
    );
    assert_eq!(got.addresses, addresses, "{what}: the addresses as given");
    assert_eq!(
        got.version,
        before.version + 1,
        "{what}: one write, one version"
    );
    assert_eq!(got.items, before.items, "{what}: the lines are untouched");
    assert_eq!(
        get(ctx, id, owner).await.as_ref(),
        Some(&expected),
        "{what}: get_cart must read back exactly what was set"
    );
    expected
}

async fn addresses_are_saved_and_read_back_exactly(env: Env<'_>) {
    let ctx = env.ctx().await;
    let limits = CartLimits {
        ttl: Duration::from_secs(3600),
        ..CartLimits::default()
    };
    let home = address("Erika", "DE");
    let office = address("Max", "US");
    // The normalised form is what is stored and read back.
    assert_eq!(home.name(), "Erika M\u{fc}ller");
    assert_eq!(home.city(), "K\u{f6}ln");
    assert_eq!(office.region(), Some("NY"));
    for (owner, id) in [
        (guest(), CartId::new_guest()),
        (customer("c1"), CartId::for_customer(&cust("c1"))),
    ] {
        cart_at(&ctx, &id, &owner, &limits).await;
        ctx.advance(Duration::from_secs(20 * 60));
        let steps = [
            (
                "both addresses",
                CartAddresses {
                    shipping: Some(home.clone()),
                    billing: Some(office.clone()),
                },
            ),
            (
                "the same addresses again",
                CartAddresses {
                    shipping: Some(home.clone()),
                    billing: Some(office.clone()),
                },
            ),
            (
                "shipping only (billing cleared)",
                CartAddresses {
                    shipping: Some(office.clone()),
                    billing: None,
                },
            ),
            (
                "billing only (shipping cleared)",
                CartAddresses {
                    shipping: None,
                    billing: Some(address("Anna", "GB")),
                },
            ),
            ("none (both cleared)", CartAddresses::default()),
            (
                "addresses on an emptied cart",
                CartAddresses {
                    shipping: Some(address("Léa", "CA")),
                    billing: None,
                },
            ),
        ];
        for (n, (what, addresses)) in steps.into_iter().enumerate() {
            if what == "addresses on an emptied cart" {
                must!(
                    ctx.carts()
                        .remove_item(&id, &owner, &sku("A"), &limits)
                        .await,
                    "empty the cart"
                );
            }
            let cart = checked_set_addresses(&ctx, &id, &owner, addresses, &limits, what).await;
            assert_eq!(
                (cart.updated_at, cart.expires_at),
                (ctx.now(), ctx.now() + chrono::Duration::seconds(3600)),
                "step {n} ({what}) slides the expiry"
            );
            ctx.advance(Duration::from_secs(20 * 60));
        }
        // A later line write keeps the addresses.
        must!(
            ctx.carts()
                .add_item(
                    &id,
                    &owner,
                    cart_item("B", 1, "1.00 USD", ctx.now()),
                    &limits
                )
                .await,
            "add after setting addresses"
        );
        assert_eq!(
            get(&ctx, &id, &owner).await.map(|c| c.addresses.shipping),
            Some(Some(address("Léa", "CA"))),
            "add_item must keep the saved addresses"
        );
    }
}

async fn addresses_need_a_live_cart_of_the_owner(env: Env<'_>) {
    let ctx = env.ctx().await;
    let carts = ctx.carts();
    let limits = CartLimits {
        ttl: Duration::from_secs(600),
        ..CartLimits::default()
    };
    let addresses = CartAddresses {
        shipping: Some(address("Erika", "DE")),
        billing: None,
    };
    let missing = CartId::new_guest();
    assert_err!(
        carts
            .set_addresses(&missing, &guest(), addresses.clone(), &limits)
            .await,
        Error::NotFound {
            kind: EntityKind::Cart,
            ..
        },
        "set_addresses on a missing cart"
    );
    assert_eq!(
        get(&ctx, &missing, &guest()).await,
        None,
        "set_addresses must not create a cart"
    );
    let g = CartId::new_guest();
    let guest_cart = cart_at(&ctx, &g, &guest(), &limits).await;
    let c1 = CartId::for_customer(&cust("c1"));
    let c1_cart = cart_at(&ctx, &c1, &customer("c1"), &limits).await;
    for (id, other) in [(&g, customer("c1")), (&c1, customer("c2")), (&c1, guest())] {
        assert_err!(
            carts
                .set_addresses(id, &other, addresses.clone(), &limits)
                .await,
            Error::NotFound {
                kind: EntityKind::Cart,
                ..
            },
            "set_addresses on {id} by {other:?}"
        );
    }
    assert_eq!(
        get(&ctx, &g, &guest()).await,
        Some(guest_cart),
        "a refused set_addresses changed the guest cart"
    );
    assert_eq!(
        get(&ctx, &c1, &customer("c1")).await,
        Some(c1_cart),
        "a refused set_addresses changed the customer cart"
    );
    ctx.advance(Duration::from_secs(600));
    assert_err!(
        carts
            .set_addresses(&g, &guest(), addresses.clone(), &limits)
            .await,
        Error::NotFound {
            kind: EntityKind::Cart,
            ..
        },
        "set_addresses on a cart whose expires_at is now"
    );
    assert_eq!(
        get(&ctx, &g, &guest()).await,
        None,
        "the expired cart came back"
    );
    // Once expired, the id starts afresh: no addresses from the old cart.
    let fresh = cart_at(&ctx, &g, &guest(), &limits).await;
    assert!(
        fresh.addresses.is_empty() && fresh.version == 1,
        "a cart created after expiry starts without addresses, got {fresh:?}"
    );
}

async fn invalid_addresses_cannot_be_built(env: Env<'_>) {
    let ctx = env.ctx().await;
    let limits = CartLimits::default();
    let id = CartId::new_guest();
    let before = cart_at(&ctx, &id, &guest(), &limits).await;
    let valid = address_input("Erika", "DE");
    let hostile: Vec<(&str, AddressInput)> = vec![
        (
            "address.country",
            AddressInput {
                country: "XX".into(),
                ..valid.clone()
            },
        ),
        (
            "address.country",
            AddressInput {
                country: "DEU".into(),
                ..valid.clone()
            },
        ),
        (
            "address.name",
            AddressInput {
                name: " \t ".into(),
                ..valid.clone()
            },
        ),
        (
            "address.line1",
            AddressInput {
                line1: "1 Main St\u{0}; DROP TABLE carts".into(),
                ..valid.clone()
            },
        ),
        (
            "address.line2",
            AddressInput {
                line2: Some("x".repeat(10_000)),
                ..valid.clone()
            },
        ),
        (
            "address.postal_code",
            AddressInput {
                postal_code: Some("5066".into()),
                ..valid.clone()
            },
        ),
        (
            "address.region",
            AddressInput {
                region: Some("ZZ".into()),
                ..address_input("Max", "US")
            },
        ),
        (
            "address.phone",
            AddressInput {
                phone: Some("<script>".into()),
                ..valid.clone()
            },
        ),
    ];
    for (field, input) in hostile {
        let err = assert_err!(
            CartAddresses::from_input(Some(address_input("Ok", "GB")), Some(input.clone())),
            Error::Validation { .. },
            "CartAddresses::from_input with a bad {field}"
        );
        assert!(
            matches!(&err, Error::Validation { field: f, .. } if f == field),
            "the error must name {field}, got {err:?}"
        );
        // The same input as JSON (from a client, or a tampered stored cart) does not
        // deserialise either.
        let json = serde_json::json!({ "shipping": input });
        assert!(
            serde_json::from_value::<CartAddresses>(json.clone()).is_err(),
            "CartAddresses deserialised an invalid {field}"
        );
        let mut cart_json = must!(serde_json::to_value(&before), "serialise the cart");
        cart_json["addresses"] = json;
        assert!(
            serde_json::from_value::<Cart>(cart_json).is_err(),
            "a Cart deserialised with an invalid {field}"
        );
    }
    // Unknown fields are refused too (nothing rides along unvalidated).
    let mut extra = must!(
        serde_json::to_value(address("Erika", "DE")),
        "serialise an address"
    );
    extra["verified"] = serde_json::json!(true);
    assert!(serde_json::from_value::<Address>(extra).is_err());
    assert!(
        serde_json::from_value::<CartAddresses>(
            serde_json::json!({ "shipping": null, "admin": true })
        )
        .is_err()
    );
    assert_eq!(
        get(&ctx, &id, &guest()).await,
        Some(before),
        "nothing was written"
    );
}

async fn merge_keeps_or_takes_addresses_as_a_pair(env: Env<'_>) {
    let ctx = env.ctx().await;
    let carts = ctx.carts();
    let limits = CartLimits::default();
    let guest_both = CartAddresses {
        shipping: Some(address("Guest", "DE")),
        billing: Some(address("Guest", "US")),
    };
    // 1. A customer cart without addresses takes the guest's.
    let g = CartId::new_guest();
    cart_at(&ctx, &g, &guest(), &limits).await;
    checked_set_addresses(&ctx, &g, &guest(), guest_both.clone(), &limits, "guest").await;
    cart_at(
        &ctx,
        &CartId::for_customer(&cust("c1")),
        &customer("c1"),
        &limits,
    )
    .await;
    ctx.advance(Duration::from_secs(5));
    let (merged, _) = checked_merge(&ctx, &g, "c1", &BTreeMap::new(), &limits).await;
    assert_eq!(
        merged.addresses, guest_both,
        "a customer cart without addresses takes the guest cart's"
    );
    // 2. A customer cart with only a billing address keeps it; nothing of the guest's
    //    (not even its shipping address) comes in.
    let c2 = CartId::for_customer(&cust("c2"));
    cart_at(&ctx, &c2, &customer("c2"), &limits).await;
    let customer_billing = CartAddresses {
        shipping: None,
        billing: Some(address("Customer", "GB")),
    };
    checked_set_addresses(
        &ctx,
        &c2,
        &customer("c2"),
        customer_billing.clone(),
        &limits,
        "customer",
    )
    .await;
    let g2 = CartId::new_guest();
    cart_at(&ctx, &g2, &guest(), &limits).await;
    checked_set_addresses(&ctx, &g2, &guest(), guest_both.clone(), &limits, "guest 2").await;
    ctx.advance(Duration::from_secs(5));
    let (merged, _) = checked_merge(&ctx, &g2, "c2", &BTreeMap::new(), &limits).await;
    assert_eq!(
        merged.addresses, customer_billing,
        "the customer's addresses are kept as a pair"
    );
    // 3. Into a missing customer cart, and from a guest cart with no lines.
    let g3 = CartId::new_guest();
    cart_at(&ctx, &g3, &guest(), &limits).await;
    must!(
        carts.remove_item(&g3, &guest(), &sku("A"), &limits).await,
        "empty the guest cart"
    );
    checked_set_addresses(&ctx, &g3, &guest(), guest_both.clone(), &limits, "guest 3").await;
    ctx.advance(Duration::from_secs(5));
    let (merged, report) = checked_merge(&ctx, &g3, "c3", &BTreeMap::new(), &limits).await;
    assert!(merged.items.is_empty() && report == MergeReport::default());
    assert_eq!(
        merged.addresses, guest_both,
        "a new customer cart takes the addresses of an empty guest cart"
    );
}

async fn concurrent_address_and_line_writes_all_count(env: Env<'_>) {
    let ctx = env.ctx().await;
    let carts = ctx.carts();
    let id = CartId::for_customer(&cust("c1"));
    let before = cart_at(&ctx, &id, &customer("c1"), &CartLimits::default()).await;
    let now = ctx.now();
    let n = 16usize;
    let results = concurrently(n, |i| {
        let carts = carts.clone();
        let id = id.clone();
        async move {
            let owner = CartOwner::Customer(cust("c1"));
            let limits = CartLimits::default();
            if i % 4 == 0 {
                let addresses = CartAddresses {
                    shipping: Some(address(&format!("Writer{i}"), "DE")),
                    billing: None,
                };
                carts.set_addresses(&id, &owner, addresses, &limits).await
            } else {
                carts
                    .add_item(
                        &id,
                        &owner,
                        cart_item(&format!("S-{i}"), 1, "1.00 USD", now),
                        &limits,
                    )
                    .await
            }
        }
    })
    .await;
    for r in &results {
        must!(r.as_ref(), "concurrent set_addresses / add_item");
    }
    let after = get(&ctx, &id, &customer("c1")).await.expect("cart");
    assert_eq!(
        after.version,
        before.version + n as u64,
        "every concurrent write bumps the version once"
    );
    assert_eq!(
        after.items.len(),
        1 + n - n / 4,
        "no line was lost to a concurrent address write"
    );
    let writer = after
        .addresses
        .shipping
        .as_ref()
        .map(|a| a.name().to_owned())
        .unwrap_or_default();
    assert!(
        (0..n)
            .step_by(4)
            .any(|i| writer == format!("Writer{i} M\u{fc}ller")),
        "the saved address is one writer's whole address, got {writer:?}"
    );
}
