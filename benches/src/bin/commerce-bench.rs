//! `commerce-bench <scenario> [--seconds S] [--concurrency C] [--products N]`
//!
//! Prints one JSON line per result on stdout; progress goes to stderr. `all --quick`
//! runs every scenario briefly (CI). Backends come from `DATABASE_URL` / `REDIS_URL`.

use std::process::ExitCode;

use clap::Parser;
use commerce_benches::harness::{BenchError, BenchResult, Report, Settings};
use commerce_benches::plot;
use commerce_benches::scenarios::{self, Scenario};

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
    /// Directory to write SVG plots into: `<scenario>-latency.svg` for every report,
    /// and `<scenario>-throughput.svg` for a `--sweep`.
    #[arg(long)]
    plot_dir: Option<std::path::PathBuf>,
    /// Runs the scenario once per concurrency level (e.g. `1,2,4,8,16,32,64`) and,
    /// with `--plot-dir`, plots throughput against concurrency.
    #[arg(long, value_delimiter = ',')]
    sweep: Vec<usize>,
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Redis URL.
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// Search shards (search scenarios).
    #[arg(long)]
    shards: Option<usize>,
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
        shards: cli.shards,
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
    if !cli.sweep.is_empty() {
        let [scenario] = chosen.as_slice() else {
            eprintln!("--sweep takes one scenario");
            return ExitCode::FAILURE;
        };
        return sweep(&runtime, scenario, &settings, &cli.sweep);
    }
    let mut failed = false;
    for scenario in chosen {
        eprintln!("== {}: {}", scenario.name, scenario.about);
        match runtime.block_on((scenario.run)(settings.clone())) {
            Ok(reports) => {
                for r in &reports {
                    println!("{}", r.to_line());
                }
                if let Some(dir) = &settings.plot_dir {
                    if let Err(e) = plot_latency(dir, scenario.name, &reports) {
                        eprintln!("{}: plot failed: {e}", scenario.name);
                        failed = true;
                    }
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

/// `<dir>/<scenario>-latency.svg`: the percentiles of the reports, with every
/// side-by-side baseline they print (`pg_p99_ms`, `raw_p50_ms`, ...).
fn plot_latency(dir: &std::path::Path, name: &str, reports: &[Report]) -> BenchResult<()> {
    let mut series = Vec::new();
    for r in reports {
        let prefixes = plot::latency_prefixes(r);
        let prefixes: Vec<&str> = prefixes.iter().map(String::as_str).collect();
        series.extend(plot::latency_series(r, &prefixes));
    }
    if series.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{name}-latency.svg"));
    plot::latency_svg(&path, &format!("{name}: latency percentiles"), &series)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// Runs `scenario` at each concurrency level, prints every report, and with a plot
/// directory writes `<scenario>-throughput.svg`.
fn sweep(
    runtime: &tokio::runtime::Runtime,
    scenario: &Scenario,
    settings: &Settings,
    levels: &[usize],
) -> ExitCode {
    let mut points = Vec::new();
    for &level in levels {
        let settings = Settings {
            concurrency: Some(level),
            ..settings.clone()
        };
        eprintln!("== {} at concurrency {level}", scenario.name);
        match runtime.block_on((scenario.run)(settings)) {
            Ok(reports) => {
                for r in reports {
                    let r = r.field("concurrency", level);
                    println!("{}", r.to_line());
                    points.push((level, r));
                }
            }
            Err(e) => {
                eprintln!("{} failed at concurrency {level}: {e}", scenario.name);
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(dir) = &settings.plot_dir {
        let path = dir.join(format!("{}-throughput.svg", scenario.name));
        let title = format!("{}: throughput against concurrency", scenario.name);
        let result = std::fs::create_dir_all(dir)
            .map_err(BenchError::from)
            .and_then(|()| plot::throughput_svg(&path, &title, &plot::sweep_series(&points)));
        match result {
            Ok(()) => eprintln!("wrote {}", path.display()),
            Err(e) => {
                eprintln!("plot failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
