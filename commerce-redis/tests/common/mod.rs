//! Shared test helpers: server URLs from the environment, unique prefixes.
#![allow(dead_code)]

use commerce_redis::{RedisBackend, RedisConfig};

/// `REDIS_URL`, default `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// `REDIS_CLUSTER_URLS`; panics with instructions when unset.
pub fn cluster_urls() -> Vec<String> {
    let urls = std::env::var("REDIS_CLUSTER_URLS").unwrap_or_default();
    let urls: Vec<String> = urls
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(
        !urls.is_empty(),
        "REDIS_CLUSTER_URLS is not set: run `bash scripts/test.sh`, or \
         `eval \"$(bash scripts/fixtures/redis-cluster.sh start)\"` first"
    );
    urls
}

/// A unique key prefix for one test.
pub fn prefix(name: &str) -> String {
    format!("t-{name}-{}", uuid::Uuid::new_v4().simple())
}

/// Connects to the shared single Redis with a fresh prefix.
pub async fn single(name: &str) -> RedisBackend {
    RedisConfig::single(redis_url())
        .with_prefix(prefix(name))
        .expect("valid prefix")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("Redis at {} is not reachable: {e}", redis_url()))
}

/// Connects to the test cluster with a fresh prefix.
pub async fn cluster(name: &str) -> RedisBackend {
    RedisConfig::cluster(cluster_urls())
        .with_prefix(prefix(name))
        .expect("valid prefix")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("the Redis Cluster is not reachable: {e}"))
}

/// A private `redis-server` on a free loopback port in a temp dir, with an
/// fsync-always append-only file so a restart keeps every acknowledged write.
pub struct PrivateRedis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = PrivateRedis {
            port,
            dir,
            child: None,
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--dir", self.dir.path().to_str().expect("utf-8 path")])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed to run the fault tests");
        self.child = Some(child);
        // Wait until it answers (bounded).
        for _ in 0..200 {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(std::time::Duration::from_millis(200)));
                if s.write_all(b"PING\r\n").is_ok() {
                    let mut buf = [0u8; 64];
                    if let Ok(n) = s.read(&mut buf) {
                        if buf[..n].starts_with(b"+PONG") {
                            return;
                        }
                    }
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!(
            "the private redis-server on port {} did not start",
            self.port
        );
    }

    /// SIGKILL: no goodbye, no final save.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
