//! Command-line flags.

use std::path::PathBuf;

use clap::Parser;

/// The storefront example: a whole shop on the embedded defaults, then a flash sale.
#[derive(Debug, Parser)]
#[command(name = "storefront")]
pub struct Args {
    /// Products to seed (each with 1 to 4 variants).
    #[arg(long, default_value_t = 10_000)]
    pub products: u64,
    /// Concurrent buyers in the flash sale.
    #[arg(long, default_value_t = 1_000)]
    pub buyers: usize,
    /// Units of the flash-sale SKU left for sale.
    #[arg(long, default_value_t = 100)]
    pub flash_units: u32,
    /// Concurrent buyers racing for the coupon limited to `--coupon-uses` uses.
    #[arg(long, default_value_t = 300)]
    pub coupon_buyers: usize,
    /// Uses of the coupon.
    #[arg(long, default_value_t = 100)]
    pub coupon_uses: u64,
    /// Orders processed at once by the queue workers.
    #[arg(long, default_value_t = 32)]
    pub workers: usize,
    /// The Best Buy category file (default: ../shared/data/bestbuy-categories.json).
    #[arg(long)]
    pub categories: Option<PathBuf>,
    /// Seed of the sample catalog.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// PostgreSQL for the source of truth (catalog, inventory, orders, outbox, queue).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The PostgreSQL schema the example owns (dropped and recreated on every run).
    #[arg(long, default_value = "storefront_example")]
    pub schema: String,
    /// Redis (or comma-separated Redis Cluster nodes) for carts and the product cache.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
}
