//! PostgreSQL restarted (immediate shutdown: crash recovery) while checkouts run, on a
//! private server (initdb into a temp dir on a free port). Afterwards the invariants
//! hold, no confirmed order is lost, and the same pool serves again without restarting
//! the host.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use commerce_core::Error;
use commerce_core::id::{LocationId, OrderId, Sku};
use commerce_core::inventory::ReservationState;
use commerce_core::order::OrderStatus;
use commerce_core::store::{InventoryStore, OrderSteps, OrderStore};
use commerce_postgres::{PgCommerce, PgConfig};

fn pg_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql (apt's postgresql)")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a server binary, as the `postgres` user when we are root (initdb refuses root).
fn run(bin: &Path, args: &[&str]) {
    let status = if is_root() {
        let mut full = vec!["-u", "postgres", "--"];
        let b = bin.to_string_lossy().to_string();
        full.push(&b);
        full.extend_from_slice(args);
        Command::new("runuser").args(&full).status()
    } else {
        Command::new(bin).args(args).status()
    }
    .expect("run a PostgreSQL binary");
    assert!(status.success(), "{} {args:?} failed", bin.display());
}

struct Server {
    bin: PathBuf,
    root: PathBuf,
    data: PathBuf,
    port: u16,
}

impl Server {
    fn start() -> Server {
        let bin = pg_bin();
        let root = std::env::temp_dir().join(format!(
            "commerce-pg-restart-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let data = root.join("data");
        std::fs::create_dir_all(&data).unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&root)
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = data.to_string_lossy().to_string();
        run(
            &bin.join("initdb"),
            &[
                "-D",
                &d,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nshared_buffers = 32MB\nmax_connections = 40\n",
            root.display()
        );
        let path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&conf);
        std::fs::write(&path, text).unwrap();
        let s = Server {
            bin,
            root,
            data,
            port,
        };
        s.ctl(&["start", "-w", "-t", "60"]);
        s
    }

    fn ctl(&self, args: &[&str]) {
        let d = self.data.to_string_lossy().to_string();
        let log = self.root.join("server.log").to_string_lossy().to_string();
        let mut all = vec!["-D", d.as_str(), "-l", log.as_str()];
        all.extend_from_slice(args);
        run(&self.bin.join("pg_ctl"), &all);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let d = self.data.to_string_lossy().to_string();
        let _ = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"))
                .args(["-D", &d, "stop", "-m", "immediate"])
                .status()
        } else {
            Command::new(self.bin.join("pg_ctl"))
                .args(["-D", &d, "stop", "-m", "immediate"])
                .status()
        };
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

const SKUS: u64 = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkouts_survive_a_server_restart() {
    let server = Server::start();
    let pg = PgCommerce::connect(
        &server.url(),
        PgConfig::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(2))
            .statement_timeout(Duration::from_secs(10)),
    )
    .await
    .unwrap();
    pg.migrate().await.unwrap();
    let w = LocationId::new("w1").unwrap();
    for i in 0..SKUS {
        pg.inventory
            .restock(&Sku::new(format!("R{i}")).unwrap(), &w, 1000, "in")
            .await
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let after_restart = Arc::new(AtomicU64::new(0));
    let restarted = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let (pg, stop, restarted, after) = (
            pg.clone(),
            stop.clone(),
            restarted.clone(),
            after_restart.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut confirmed: Vec<OrderId> = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let sku = format!("R{}", (t * 7 + n) % SKUS);
                let new = common::new_order(&format!("k-{t}-{n}"), &[(&sku, 1)]);
                let step = async {
                    let order = pg.orders.create_order(new).await?.into_order();
                    let reserved = pg
                        .steps
                        .reserve_order(&order, Duration::from_secs(600))
                        .await?;
                    if reserved.is_cancelled() {
                        return Err(Error::conflict(
                            commerce_core::EntityKind::Order,
                            "sold out",
                        ));
                    }
                    let paid = pg
                        .steps
                        .confirm_payment(&reserved.order, &format!("pay-{}", order.id))
                        .await?;
                    Ok(paid.order)
                };
                match step.await {
                    Ok(o) => {
                        if restarted.load(Ordering::SeqCst) {
                            after.fetch_add(1, Ordering::SeqCst);
                        }
                        confirmed.push(o.id)
                    }
                    Err(e) if e.is_retryable() => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(Error::Conflict { .. }) => {}
                    Err(e) => panic!("a checkout failed with a non-retryable error: {e:?}"),
                }
            }
            confirmed
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // immediate shutdown: the server crashes and recovers from its WAL
    let s = &server;
    tokio::task::block_in_place(|| s.ctl(&["restart", "-m", "immediate", "-w", "-t", "60"]));
    restarted.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    while after_restart.load(Ordering::SeqCst) < 20 {
        assert!(
            Instant::now() < deadline,
            "the pool did not recover after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut confirmed = Vec::new();
    for t in tasks {
        confirmed.extend(t.await.unwrap());
    }
    assert!(!confirmed.is_empty());
    for id in &confirmed {
        let order = pg.orders.get_order(id).await.unwrap();
        assert_eq!(
            order.map(|o| o.status),
            Some(OrderStatus::PaymentConfirmed),
            "confirmed order {id} was lost"
        );
        let r = pg.inventory.reservation(id).await.unwrap().unwrap();
        assert_eq!(r.state, ReservationState::Confirmed);
    }
    assert!(
        pg.inventory.audit().await.unwrap().is_empty(),
        "invariants broken after the restart"
    );
    // every unit sold belongs to a confirmed reservation (some may have committed
    // without their caller hearing back)
    let mut sold = 0;
    for i in 0..SKUS {
        sold += pg
            .inventory
            .stock(&Sku::new(format!("R{i}")).unwrap())
            .await
            .unwrap()
            .sold();
    }
    assert!(sold >= confirmed.len() as u64);
    let confirmed_in_db: i64 = commerce_postgres::sqlx::query_scalar(
        "SELECT count(*) FROM commerce.reservations WHERE state = 'CONFIRMED'",
    )
    .fetch_one(pg.pool())
    .await
    .unwrap();
    assert_eq!(sold, confirmed_in_db as u64);
}
