//! The Redis side: connecting, writing batches of model commands, scanning
//! the namespace.
//!
//! Writes are idempotent (whole-hash rewrites, `HSET`/`HDEL` of values from
//! the state, `DEL`), so a batch that is written twice after a crash leaves
//! the same Redis. A broken connection is rebuilt by the connection manager.

mod encode;

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Pipeline};

pub use encode::{checked_transaction, pipeline};

use crate::config::redact_url;
use crate::error::{Error, Result};
use crate::model::{Bytes, Command};

/// A connection to the Redis that holds the model. Cheap to clone: clones
/// share one multiplexed connection.
#[derive(Clone)]
pub struct RedisSink {
    conn: ConnectionManager,
    redacted_url: String,
}

impl RedisSink {
    /// Connects and checks with `PING` that the server answers (and that the
    /// credentials are accepted).
    /// `ca`: PEM file of the CA of the server's certificate, for `rediss://`.
    pub async fn connect(url: &str, ca: Option<&Path>) -> Result<Self> {
        let redacted_url = redact_url(url);
        let connect_err = |source| Error::RedisConnect {
            url: redacted_url.clone(),
            source,
        };
        let client = match ca {
            None => Client::open(url).map_err(connect_err)?,
            Some(ca) => {
                let root_cert = std::fs::read(ca).map_err(|e| {
                    Error::Config(format!(
                        "cannot read the Redis CA file {}: {e}",
                        ca.display()
                    ))
                })?;
                let certs = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                };
                Client::build_with_tls(url, certs).map_err(connect_err)?
            }
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(2);
        let mut conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(connect_err)?;
        redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(connect_err)?;
        // A cluster node answers most writes with MOVED: say so once, up
        // front. A standalone server refuses CLUSTER INFO ("cluster support
        // disabled"), as does an ACL without it: both carry on.
        let cluster = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async::<String>(&mut conn)
            .await;
        if cluster.is_ok() {
            return Err(Error::Config(format!(
                "REDIS_URL {redacted_url} is a node of a Redis Cluster; \
                 this version of the replicator writes one standalone Redis (or the primary \
                 of a replication group). Point REDIS_URL at a standalone Redis"
            )));
        }
        Ok(RedisSink { conn, redacted_url })
    }

    pub fn redacted_url(&self) -> &str {
        &self.redacted_url
    }

    /// The underlying connection, for reads (`verify`, tests).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Writes the commands as one pipeline; with `atomic`, wrapped in
    /// `MULTI`/`EXEC` so that no reader sees part of it.
    pub async fn write(&self, commands: &[Command], atomic: bool) -> Result<()> {
        if commands.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        pipeline(commands, atomic)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| Error::redis("writing a batch", e))
    }

    /// Writes the commands as one `MULTI`/`EXEC` and reports, from inside the
    /// same transaction, whether the namespace's `marker` key exists: when it
    /// does not, Redis lost the namespace (a restart without persistence, a
    /// flush) and it must be rebuilt.
    pub async fn write_checked(&self, commands: &[Command], marker: &[u8]) -> Result<bool> {
        self.exec_checked(&checked_transaction(commands, marker))
            .await
    }

    /// Runs a transaction made by [`checked_transaction`] (encoded ahead,
    /// while Redis was busy with the one before) and reports whether the
    /// namespace's marker key exists.
    pub async fn exec_checked(&self, pipe: &Pipeline) -> Result<bool> {
        let mut conn = self.conn.clone();
        let context = "writing a group of transactions";
        let mut replies: Vec<redis::Value> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| Error::redis(context, e))?;
        // The last reply is the `EXISTS`; none at all is not a lost
        // namespace, which would rebuild it, but an error.
        let Some(exists) = replies.pop() else {
            let empty = (
                redis::ErrorKind::UnexpectedReturnType,
                "EXEC returned no replies",
            );
            return Err(Error::redis(context, empty.into()));
        };
        redis::from_redis_value(exists).map_err(|e| Error::redis(context, e.into()))
    }

    /// The value of a string key.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(|e| Error::redis("reading the namespace marker", e))
    }

    /// Whether any key matches one of the `SCAN MATCH` patterns.
    pub async fn any_key(&self, patterns: &[Bytes]) -> Result<bool> {
        let mut any = false;
        self.scan_each(patterns, async |found| {
            any = !found.is_empty();
            Ok(if any {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        })
        .await?;
        Ok(any)
    }

    /// Hands each page of `SCAN MATCH` of each pattern to `page`, until
    /// `page` breaks off. A key may be handed over more than once.
    pub async fn scan_each(
        &self,
        patterns: &[Bytes],
        mut page: impl AsyncFnMut(Vec<Bytes>) -> Result<ControlFlow<()>>,
    ) -> Result<()> {
        for pattern in patterns {
            let mut cursor = 0;
            loop {
                let (next, found) = self.scan_page(pattern, cursor).await?;
                if page(found).await?.is_break() {
                    return Ok(());
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
    }

    /// One page of `SCAN cursor MATCH pattern`: the next cursor (0 at the
    /// end) and the keys. A key may be reported more than once.
    async fn scan_page(&self, pattern: &[u8], cursor: u64) -> Result<(u64, Vec<Bytes>)> {
        let mut conn = self.conn.clone();
        redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .map_err(|e| Error::redis("scanning the namespace", e))
    }
}
