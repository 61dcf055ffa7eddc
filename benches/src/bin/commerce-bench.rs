//! `commerce-bench <scenario> [--seconds S] [--concurrency C] [--products N]`
//!
//! Prints one JSON line per result on stdout; progress goes to stderr. `all --quick`
//! runs every scenario briefly (CI). Backends come from `DATABASE_URL` / `REDIS_URL`.

use std::process::ExitCode;

use clap::Parser;
use commerce_benches::harness::Settings;
use commerce_benches::scenarios;

#[derive(Debug, Parser)]
#[command(name = "commerce-bench", about = "Benchmarks of the commerce crates")]
struct Cli {
    /// A scenario name, `all`, or `list`.
    scenario: String,
    /// Measurement time in seconds.
    #[arg(long)]
    seconds: Option<f64>,
    /// Concurrent tasks.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Catalog size.
    #[arg(long)]
    products: Option<u64>,
    /// A brief run that only checks the scenario works.
    #[arg(long)]
    quick: bool,
    /// Backend to run on (scenario-specific: memory, postgres, redis, ...).
    #[arg(long)]
    backend: Option<String>,
    /// Directory to write SVG plots into.
    #[arg(long)]
    plot_dir: Option<std::path::PathBuf>,
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Redis URL.
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = Settings {
        seconds: cli.seconds,
        concurrency: cli.concurrency,
        products: cli.products,
        quick: cli.quick,
        backend: cli.backend,
        database_url: cli.database_url,
        redis_url: cli.redis_url,
        plot_dir: cli.plot_dir,
    };
    let all = scenarios::all();
    if cli.scenario == "list" {
        for s in &all {
            println!("{:<28} {}", s.name, s.about);
        }
        return ExitCode::SUCCESS;
    }
    let chosen: Vec<_> = all
        .iter()
        .filter(|s| cli.scenario == "all" || s.name == cli.scenario)
        .collect();
    if chosen.is_empty() {
        eprintln!(
            "unknown scenario {:?}; `commerce-bench list` lists them",
            cli.scenario
        );
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = false;
    for scenario in chosen {
        eprintln!("== {}: {}", scenario.name, scenario.about);
        match runtime.block_on((scenario.run)(settings.clone())) {
            Ok(reports) => {
                for r in reports {
                    println!("{}", r.to_line());
                }
            }
            Err(e) => {
                eprintln!("{} failed: {e}", scenario.name);
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
