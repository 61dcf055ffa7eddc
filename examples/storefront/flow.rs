//! The shopper's path: browse a category subtree, search, fill a cart (as a guest, then
//! signed in), check out, and follow the order through the pipeline.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use commerce_core::address::{Address, AddressInput};
use commerce_core::cart::{CartAddresses, CartOwner};
use commerce_core::catalog::CategoryPath;
use commerce_core::id::{CartId, CustomerId, IdempotencyKey, LocationId, ProductId};
use commerce_core::order::Order;
use commerce_core::service::{
    CheckoutOutcome, CheckoutRequest, Disposition, ReturnLine, ReturnRequest,
};
use commerce_core::store::InventoryStoreExt;
use commerce_core::store::search::{FacetCount, FacetRequest, SearchHit, SearchQuery, SortOrder};
use commerce_core::{Error, Result};

use crate::seed::Seeded;
use crate::shop::Shop;

/// Lists the products of the busiest second-level category.
pub async fn browse(shop: &Shop, seeded: &Seeded) -> Result<()> {
    let mut per_branch: BTreeMap<CategoryPath, u64> = BTreeMap::new();
    for (leaf, n) in &seeded.per_category {
        let branch = std::iter::once(leaf.clone())
            .chain(leaf.ancestors())
            .find(|c| c.depth() == 2)
            .unwrap_or_else(|| leaf.clone());
        *per_branch.entry(branch).or_default() += n;
    }
    let Some((branch, _)) = per_branch
        .iter()
        .max_by_key(|(c, n)| (**n, std::cmp::Reverse(*c)))
    else {
        return Ok(());
    };
    // The listing comes from the search index (category facet, sort on a fast field,
    // keyset cursor, facet counts), not from a catalog row per product.
    let started = Instant::now();
    let mut query = commerce_search::listing::category_listing(
        branch.clone(),
        SortOrder::Popularity,
        commerce_core::money::Currency::USD,
    );
    let first = shop.search.search(&query).await?;
    let took = started.elapsed();
    query.cursor = first.next_cursor.clone();
    let started = Instant::now();
    let second = match query.cursor {
        Some(_) => shop.search.search(&query).await?.hits.len(),
        None => 0,
    };
    let took_next = started.elapsed();
    println!(
        "  browse \"{branch}\": {} categories in the subtree, {} products, best sellers first \
         (page 1 in {took:.2?}, page 2 ({second}) in {took_next:.2?})",
        seeded.tree.subtree(branch).count(),
        first.total,
    );
    let counts = |f: &[FacetCount]| {
        f.iter()
            .take(3)
            .map(|c| format!("{} ({})", c.value, c.count))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("    subcategories: {}", counts(&first.facets.categories));
    println!("    brands: {}", counts(&first.facets.brands));
    println!("    prices: {}", counts(&first.facets.prices));
    for h in first.hits.iter().take(3) {
        println!("    {:<60} from {}", ellipsis(&h.title, 60), h.price);
    }
    Ok(())
}

/// Runs a few shopper-style queries and shows the first that finds something.
pub async fn search(shop: &Shop, seeded: &Seeded) -> Result<Vec<SearchHit>> {
    let mut queries: Vec<String> = [
        "sony headphone",
        "samsung tv",
        "apple laptop",
        "canon camera",
        "bose speaker",
    ]
    .map(String::from)
    .to_vec();
    if let Some(sku) = seeded.skus.first() {
        if let Some(p) = shop.stores.catalog.get_product_by_sku(sku).await? {
            queries.push(p.brand);
        }
    }
    let mut last = Vec::new();
    for text in queries {
        let started = Instant::now();
        let results = shop
            .search
            .search(&SearchQuery {
                limit: 5,
                facets: FacetRequest {
                    brands: true,
                    categories: true,
                    ..FacetRequest::default()
                },
                ..SearchQuery::text(text.clone())
            })
            .await?;
        last = results.hits.clone();
        if results.hits.len() < 3 {
            continue;
        }
        let took = started.elapsed();
        let roots: Vec<String> = results
            .facets
            .categories
            .iter()
            .take(3)
            .map(|f| format!("{} ({})", f.value, f.count))
            .collect();
        println!(
            "  search \"{text}\": {} hits in {took:.2?}; top categories: {}",
            results.total,
            roots.join(", ")
        );
        for h in &results.hits {
            println!("    {:<60} {}", ellipsis(&h.title, 60), h.price);
        }
        return Ok(results.hits);
    }
    Ok(last)
}

/// Fills a cart from the search hits (or any seeded products), signs in, checks out,
/// and prints the order's history.
/// Returns the order placed (none when the catalog had too little in stock).
pub async fn shop_and_checkout(
    shop: &Shop,
    seeded: &Seeded,
    hits: &[SearchHit],
) -> Result<Option<Order>> {
    let mut products: Vec<ProductId> = hits.iter().map(|h| h.product_id.clone()).collect();
    for sku in seeded.skus.iter().take(20) {
        if let Some(p) = shop.stores.catalog.get_product_by_sku(sku).await? {
            products.push(p.id);
        }
    }
    let mut skus = Vec::new();
    for id in &products {
        if let Some(p) = shop.stores.catalog.get_product(id).await? {
            for v in &p.variants {
                if shop.stores.inventory.available(&v.sku).await? >= 2 {
                    skus.push(v.sku.clone());
                    break;
                }
            }
        }
        if skus.len() == 2 {
            break;
        }
    }
    let [first, second, ..] = skus.as_slice() else {
        println!("  (not enough stocked search hits for the cart demo)");
        return Ok(None);
    };

    // As a guest.
    let guest = CartId::new_guest();
    shop.carts.add(&guest, &CartOwner::Guest, first, 2).await?;
    shop.carts.add(&guest, &CartOwner::Guest, second, 1).await?;
    // The guest enters a shipping address at the cart step: validated (an unknown
    // country or a malformed ZIP code never gets saved), kept on the cart.
    let address = Address::new(AddressInput {
        name: "Demo Customer".into(),
        line1: "350 Fifth Avenue".into(),
        city: "New York".into(),
        region: Some("NY".into()),
        postal_code: Some("10118".into()),
        country: "US".into(),
        ..AddressInput::default()
    })?;
    let saved = CartAddresses {
        shipping: Some(address),
        billing: None,
    };
    shop.carts
        .set_addresses(&guest, &CartOwner::Guest, saved)
        .await?;
    // The customer's cart from an earlier visit holds one of the first item too.
    let customer = CustomerId::new("demo-customer")?;
    let owner = CartOwner::Customer(customer.clone());
    let cart_id = CartId::for_customer(&customer);
    shop.carts.add(&cart_id, &owner, first, 1).await?;
    let (cart, report) = shop.carts.sign_in(&guest, &customer).await?;
    println!(
        "  cart: guest cart merged into {}'s on sign-in: {} lines, {} units{}",
        customer,
        cart.items.len(),
        cart.total_quantity(),
        if report.capped.is_empty() && report.dropped.is_empty() {
            String::new()
        } else {
            format!(
                " (capped {:?}, dropped {:?})",
                report.capped, report.dropped
            )
        }
    );
    for i in &cart.items {
        println!("    {:>2} x {:<22} at {}", i.quantity, i.sku, i.unit_price);
    }
    if let Some(a) = &cart.addresses.shipping {
        println!(
            "  saved on the cart (from the guest cart): ship to {}, {} {}",
            a.city(),
            a.region().unwrap_or(""),
            a.postal_code().unwrap_or("")
        );
    }

    let key = IdempotencyKey::new("storefront-demo-checkout-1")?;
    // No address in the request: checkout uses the one saved on the cart.
    let mut request = CheckoutRequest::server_cart(customer.clone(), cart_id, owner, key);
    // The options of the address's zone, priced for this cart; the shopper takes the
    // cheapest.
    let method = match shop.checkout_to_address.preview(&request).await {
        Ok(preview) => {
            let options: Vec<String> = preview
                .options
                .iter()
                .map(|o| format!("{} {}", o.name, o.price))
                .collect();
            println!("  shipping to New York, NY 10118: {}", options.join(", "));
            preview.options.first().map(|o| o.method_id.clone())
        }
        Err(e) => {
            println!("  no preview: {e}");
            None
        }
    };
    request.shipping_method = Some(method.unwrap_or_else(|| "ground".to_owned()));
    let order = match shop.checkout_to_address.checkout(&request).await? {
        CheckoutOutcome::Placed { order, .. } => order,
        CheckoutOutcome::NeedsReview(review) => {
            let issues: Vec<_> = review.issues().collect();
            println!("  checkout needs review: {issues:?}");
            return Ok(None);
        }
    };
    let t = &order.totals;
    let chosen = order
        .checkout
        .shipping_option
        .as_ref()
        .map_or(String::new(), |o| format!(" ({})", o.name));
    println!(
        "  checkout: order {} — subtotal {}, shipping {}{chosen}, tax {}, total {}",
        order.id, t.subtotal, t.shipping, t.tax, t.total
    );
    for l in &order.lines {
        if let Some(tax) = &l.tax {
            println!(
                "    {:>2} x {:<22} {}  tax {} ({} at {}%)",
                l.quantity,
                l.sku,
                l.line_total,
                tax.tax,
                tax.tax_class.as_str(),
                (tax.rate * rust_decimal::Decimal::ONE_HUNDRED).normalize()
            );
        }
    }
    let started = Instant::now();
    let settled = shop
        .wait_settled(&order.id, Duration::from_secs(30))
        .await?;
    println!(
        "  pipeline: {} in {:.2?} (event log -> queue -> worker)",
        settled.status,
        started.elapsed()
    );
    let again = shop.checkout_to_address.checkout(&request).await?;
    let same = again.order().map(|o| &o.id) == Some(&order.id);
    let captures = shop
        .payments
        .captures()
        .iter()
        .filter(|c| c.order_id == order.id)
        .count();
    println!(
        "  retried checkout with the same key: {} order; captures for it: {captures}",
        if same { "same" } else { "DIFFERENT" }
    );
    return_one_unit(shop, &order).await?;
    println!("  order history:");
    for c in shop.stores.orders.history(&order.id).await? {
        let from = c.from.map_or("-".to_string(), |f| f.to_string());
        println!(
            "    {}  {:>17} -> {:<17} {}",
            c.at.format("%H:%M:%S%.3f"),
            from,
            c.to,
            c.reason
        );
    }
    let sent = shop.notifier.sent_for(&order.id);
    println!(
        "  customer notified: {}",
        sent.iter()
            .map(|n| n.notification.kind())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !same || captures != 1 {
        return Err(Error::backend(
            false,
            "the retried checkout was not idempotent",
        ));
    }
    Ok(Some(settled))
}

/// Ships the order, then takes back one unit of its first line: restocked in the east
/// warehouse, refunded through the gateway under the refund ledger's guard.
async fn return_one_unit(shop: &Shop, order: &Order) -> Result<()> {
    shop.pipeline.mark_shipped(&order.id, "1Z-DEMO").await?;
    let Some(line) = order.lines.first() else {
        return Ok(());
    };
    let request = ReturnRequest {
        order_id: order.id.clone(),
        key: IdempotencyKey::new("return-1")?,
        lines: vec![ReturnLine {
            sku: line.sku.clone(),
            quantity: 1,
        }],
        disposition: Disposition::Restock {
            location: LocationId::new("wh-east")?,
        },
        reason: "did not fit".into(),
    };
    let done = shop.returns.process(&request).await?;
    println!(
        "  return: 1 x {} back in wh-east; refunded {} ({}); {} of {} paid refunded; order {}",
        line.sku,
        done.refund.total,
        done.gateway.as_ref().map_or("-", |g| g.refund_ref.as_str()),
        done.balance.total_refunded,
        done.balance.total_paid,
        done.order.status
    );
    // Asking for more units than are left is refused, and nothing is written.
    let too_many = ReturnRequest {
        key: IdempotencyKey::new("return-2")?,
        lines: vec![ReturnLine {
            sku: line.sku.clone(),
            quantity: line.quantity,
        }],
        ..request
    };
    match shop.returns.process(&too_many).await {
        Err(Error::Validation { field, .. }) => {
            println!(
                "  return of {} more units: refused ({field})",
                line.quantity
            )
        }
        other => {
            return Err(Error::backend(
                false,
                format!("an over-return was not refused: {other:?}"),
            ));
        }
    }
    Ok(())
}

/// The first `n` characters of `s`, with an ellipsis if cut.
pub fn ellipsis(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(n - 1).collect();
        out.push('…');
        out
    }
}
