//! Configuration and the connection: one node (a [`ConnectionManager`] that reconnects
//! on its own) or a Redis Cluster ([`ClusterConnection`]), behind one type so every
//! feature works on both.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use commerce_core::{Error, Result};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::error::map;

/// Longest key prefix accepted.
pub const MAX_PREFIX_LEN: usize = 64;

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Topology {
    /// One Redis server, e.g. `redis://127.0.0.1:6379`.
    Single(String),
    /// The seed nodes of a Redis Cluster.
    Cluster(Vec<String>),
}

/// How to reach Redis and how to name keys.
///
/// ```
/// use commerce_redis::RedisConfig;
///
/// let config = RedisConfig::single("redis://127.0.0.1:6379").with_prefix("shop")?;
/// assert_eq!(config.prefix(), "shop");
/// assert!(RedisConfig::single("redis://x").with_prefix("no spaces").is_err());
/// assert!(RedisConfig::single("redis://x").with_prefix("{tag}").is_err());
/// # Ok::<(), commerce_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    topology: Topology,
    prefix: String,
    response_timeout: Duration,
    connection_timeout: Duration,
    /// A PEM root certificate trusted for `rediss://` (instead of the system's roots).
    root_certificate: Option<Vec<u8>>,
}

impl RedisConfig {
    /// One Redis server at `url`, prefix `commerce`.
    pub fn single(url: impl Into<String>) -> Self {
        Self::new(Topology::Single(url.into()))
    }

    /// A Redis Cluster reached through `seeds` (any subset of its nodes), prefix `commerce`.
    pub fn cluster<I, S>(seeds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(Topology::Cluster(
            seeds.into_iter().map(Into::into).collect(),
        ))
    }

    /// A cluster if `urls` holds several comma-separated URLs, else one server.
    pub fn from_urls(urls: &str) -> Self {
        let list: Vec<String> = urls
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if list.len() > 1 {
            Self::new(Topology::Cluster(list))
        } else {
            Self::single(urls.trim())
        }
    }

    fn new(topology: Topology) -> Self {
        RedisConfig {
            topology,
            prefix: "commerce".into(),
            response_timeout: Duration::from_secs(2),
            connection_timeout: Duration::from_secs(1),
            root_certificate: None,
        }
    }

    /// Trusts the CA certificate `pem` (PEM bytes) for `rediss://` URLs instead of the
    /// system's root certificates: a private CA or a self-signed server. Needs the
    /// `rustls` feature.
    #[cfg(feature = "rustls")]
    pub fn with_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificate = Some(pem.into());
        self
    }

    /// A client for one node's `url`, with the configured root certificate.
    fn client(&self, url: &str) -> Result<redis::Client> {
        let bad = |e| Error::permanent(format!("bad redis url {url:?}"), e);
        match &self.root_certificate {
            #[cfg(feature = "rustls")]
            Some(pem) => redis::Client::build_with_tls(url, self.certificates(pem)).map_err(bad),
            _ => redis::Client::open(url).map_err(bad),
        }
    }

    #[cfg(feature = "rustls")]
    fn certificates(&self, pem: &[u8]) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.to_vec()),
        }
    }

    /// Namespaces every key under `prefix` (1 to 64 of `A-Z a-z 0-9 _ - . :`).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Result<Self> {
        let prefix = prefix.into();
        validate_prefix(&prefix)?;
        self.prefix = prefix;
        Ok(self)
    }

    /// How long one command may take before it fails as retryable (default 2 s).
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How long connecting may take (default 1 s).
    pub fn with_connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The topology.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Connects. Fails with a retryable [`Error::Backend`] if Redis is unreachable.
    pub async fn connect(&self) -> Result<RedisBackend> {
        let conn = match &self.topology {
            Topology::Single(url) => {
                let client = self.client(url)?;
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(self.response_timeout))
                    .set_connection_timeout(Some(self.connection_timeout))
                    // Fail fast while Redis is down (a retryable error in tens of
                    // milliseconds); the manager reconnects on the next request.
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(10))
                    .set_max_delay(Duration::from_millis(100));
                Conn::Single(
                    ConnectionManager::new_with_config(client, config)
                        .await
                        .map_err(map)?,
                )
            }
            Topology::Cluster(seeds) => {
                let builder = redis::cluster::ClusterClientBuilder::new(seeds.clone())
                    .retries(3)
                    .connection_timeout(self.connection_timeout)
                    .response_timeout(self.response_timeout);
                #[cfg(feature = "rustls")]
                let builder = match &self.root_certificate {
                    Some(pem) => builder.certs(self.certificates(pem)),
                    None => builder,
                };
                let client = builder
                    .build()
                    .map_err(|e| Error::permanent("bad redis cluster urls", e))?;
                Conn::Cluster(client.get_async_connection().await.map_err(map)?)
            }
        };
        Ok(RedisBackend {
            conn,
            prefix: Arc::from(self.prefix.as_str()),
            config: Arc::new(self.clone()),
        })
    }
}

/// Checks a key prefix: 1 to 64 of `A-Z a-z 0-9 _ - . :` (no braces, which would
/// change hash-slot placement, no spaces or glob characters).
pub fn validate_prefix(prefix: &str) -> Result<()> {
    let ok_len = !prefix.is_empty() && prefix.len() <= MAX_PREFIX_LEN;
    let ok_chars = prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok_len && ok_chars {
        Ok(())
    } else {
        Err(Error::validation(
            "prefix",
            format!("1 to {MAX_PREFIX_LEN} of A-Z a-z 0-9 _ - . : expected"),
        ))
    }
}

/// The connection: one node or a cluster.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// A connected Redis (one node or a cluster) and the key prefix; cheap to clone, every
/// store of this crate is built on one.
#[derive(Clone)]
pub struct RedisBackend {
    pub(crate) conn: Conn,
    pub(crate) prefix: Arc<str>,
    config: Arc<RedisConfig>,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("topology", &self.config.topology)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RedisBackend {
    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_))
    }

    /// A connection handle (a clone; all clones share the underlying connections).
    pub fn connection(&self) -> impl ConnectionLike + Clone + Send + Sync + 'static {
        self.conn.clone()
    }

    pub(crate) fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// `<prefix>:<kind>:{<tag>}`: every key of one entity shares the hash slot of `tag`.
    pub(crate) fn key(&self, kind: &str, tag: &str) -> String {
        format!("{}:{kind}:{{{tag}}}", self.prefix)
    }

    /// Round trip check.
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.conn();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(map)
    }

    /// The URLs of the cluster's masters, from `CLUSTER NODES` on the first seed that
    /// answers (the seeds themselves if none does).
    async fn cluster_masters(&self, seeds: &[String]) -> Result<Vec<String>> {
        for seed in seeds {
            let Ok(client) = self.config.client(seed) else {
                continue;
            };
            let scheme = if seed.starts_with("rediss://") {
                "rediss"
            } else {
                "redis"
            };
            let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                continue;
            };
            let Ok(nodes) = redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async::<String>(&mut conn)
                .await
            else {
                continue;
            };
            let masters: Vec<String> = nodes
                .lines()
                .filter_map(|line| {
                    let mut fields = line.split_whitespace();
                    let addr = fields.nth(1)?;
                    let flags = fields.next()?;
                    if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
                        return None;
                    }
                    let hostport = addr.split('@').next()?;
                    Some(format!("{scheme}://{hostport}"))
                })
                .collect();
            if !masters.is_empty() {
                return Ok(masters);
            }
        }
        Ok(seeds.to_vec())
    }

    /// The server, or every master of the cluster.
    async fn nodes(&self) -> Result<Vec<String>> {
        Ok(match &self.config.topology {
            Topology::Single(url) => vec![url.clone()],
            Topology::Cluster(seeds) => self.cluster_masters(seeds).await?,
        })
    }

    /// Every key matching `pattern` (a `SCAN MATCH` glob), node by node with `SCAN`
    /// (never `KEYS`): O(keys in the database), for periodic jobs, not requests.
    pub(crate) async fn scan_keys(&self, pattern: &str) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for url in self.nodes().await? {
            let client = self.config.client(&url)?;
            let mut node = client
                .get_multiplexed_async_connection()
                .await
                .map_err(map)?;
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut node)
                    .await
                    .map_err(map)?;
                found.extend(keys);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(found)
    }

    /// Deletes every key under the prefix, node by node with `SCAN` (never `KEYS`).
    /// Returns how many keys were deleted. Meant for tests and tenant removal.
    pub async fn delete_all(&self) -> Result<u64> {
        let nodes = self.nodes().await?;
        let pattern = format!("{}:*", self.prefix);
        let mut deleted = 0u64;
        for url in nodes {
            let client = self.config.client(&url)?;
            let mut node = client
                .get_multiplexed_async_connection()
                .await
                .map_err(map)?;
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut node)
                    .await
                    .map_err(map)?;
                for key in keys {
                    // One key per command: keys of other slots may live on this node, and
                    // a replica's keys are not deletable (READONLY), skip those.
                    match redis::cmd("UNLINK")
                        .arg(&key)
                        .query_async::<u64>(&mut node)
                        .await
                    {
                        Ok(n) => deleted += n,
                        Err(e)
                            if e.kind()
                                == redis::ErrorKind::Server(redis::ServerErrorKind::Moved) => {}
                        Err(e)
                            if e.kind()
                                == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly) => {}
                        Err(e) => return Err(map(e)),
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(deleted)
    }
}
