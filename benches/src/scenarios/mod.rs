//! Every scenario, by name. Each module registers its scenarios in [`all`].

use futures::future::BoxFuture;

use crate::harness::{BenchResult, Report, Settings};

mod bulk_load;
mod memory;
mod order_path;
mod postgres;
mod promo_checkout;
mod promotions;
mod recommend;
mod redis;
mod scale;
mod search;

/// A runnable scenario.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// The name given on the command line.
    pub name: &'static str,
    /// One line on what it measures.
    pub about: &'static str,
    /// Runs it.
    pub run: fn(Settings) -> BoxFuture<'static, BenchResult<Vec<Report>>>,
}

/// Every scenario, in the order `all` runs them.
pub fn all() -> Vec<Scenario> {
    let mut out = Vec::new();
    out.extend(memory::scenarios());
    out.extend(recommend::scenarios());
    out.extend(postgres::scenarios());
    out.extend(order_path::scenarios());
    out.extend(bulk_load::scenarios());
    out.extend(promotions::scenarios());
    out.extend(redis::scenarios());
    out.extend(search::scenarios());
    out.extend(scale::scenarios());
    out
}
