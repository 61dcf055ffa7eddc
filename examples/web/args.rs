//! Command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// The shop as an HTTP service.
#[derive(Debug, Clone, Parser)]
#[command(name = "web")]
pub struct Args {
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Products to seed (each with 1 to 4 variants).
    #[arg(long, default_value_t = 10_000)]
    pub products: u64,
    /// Units of the flash-sale SKU (`FLASH-1`) in stock at start.
    #[arg(long, default_value_t = 100)]
    pub flash_units: u32,
    /// Orders processed at once by the queue workers.
    #[arg(long, default_value_t = 32)]
    pub workers: usize,
    /// Requests per second per client address (sustained; the burst is twice this).
    #[arg(long, default_value_t = 50)]
    pub ip_rate: u32,
    /// Searches per minute per shopper (customer or address).
    #[arg(long, default_value_t = 300)]
    pub search_rate: u32,
    /// Checkouts per minute per customer.
    #[arg(long, default_value_t = 20)]
    pub checkout_rate: u32,
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
    #[arg(long, default_value = "web_example")]
    pub schema: String,
    /// Redis (or comma-separated Redis Cluster nodes) for carts and the product cache.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
}
