//! Redis Cluster: the `redis` crate's cluster client, which keeps the slot
//! map, one connection per node, and follows `MOVED` and `ASK` (resharding)
//! and failovers. Here: a batch written as one pipeline per slot, all slots
//! at once; reads spread the same way; `SCAN` and `WAIT` on every master.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::try_join_all;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisResult, Value};

use crate::model::Bytes;

/// Pipelines (one per slot) sent at once; the next ones go when all of
/// these are answered.
const PARTS_IN_FLIGHT: usize = 1024;

/// A connection to a Redis Cluster. Cheap to clone: clones share the
/// client's connections.
#[derive(Clone)]
pub struct Cluster {
    /// Replaced by a fresh one (which reads the slot map anew) when an
    /// operation fails on I/O, times out, or meets a transaction aborted by
    /// a redirect: a node that restarts at the same address can leave
    /// requests of the old connection unanswered, and the client does not
    /// follow a `MOVED` inside `MULTI`.
    conn: Arc<RwLock<ClusterConnection>>,
    /// Every node seen so far, as URLs with the seeds' credentials: a fresh
    /// connection starts from any of them, so that the seed nodes need not
    /// be up.
    known: Arc<RwLock<Vec<String>>>,
    template: Arc<str>,
    ca: Option<Arc<[u8]>>,
}

/// The longest an operation may take (the whole of one batch's parts)
/// before the connection counts as broken.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(20);

/// A node's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl Cluster {
    /// Connects through the seed nodes (their user, password and TLS mode
    /// apply to every node); `ca`: the PEM of the CA of the nodes'
    /// certificates, for `rediss://`.
    pub async fn connect(seeds: &[String], ca: Option<Vec<u8>>) -> RedisResult<Cluster> {
        let ca: Option<Arc<[u8]>> = ca.map(Into::into);
        let conn = open(seeds, ca.as_deref()).await?;
        let cluster = Cluster {
            conn: Arc::new(RwLock::new(conn)),
            known: Arc::new(RwLock::new(seeds.to_vec())),
            template: seeds.first().cloned().unwrap_or_default().into(),
            ca,
        };
        cluster.learn_nodes().await;
        Ok(cluster)
    }

    fn conn(&self) -> ClusterConnection {
        self.conn.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Adds every node of `CLUSTER SLOTS` to the known nodes.
    async fn learn_nodes(&self) {
        let mut conn = self.conn();
        let asked = tokio::time::timeout(Duration::from_secs(5), slot_ranges(&mut conn));
        let Ok(Ok(ranges)) = asked.await else {
            return;
        };
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        for node in slot_nodes(ranges, true) {
            if let Some(url) = node_url(&self.template, &node) {
                if !known.contains(&url) {
                    known.push(url);
                }
            }
        }
    }

    /// A fresh connection from any known node, in place of the current one.
    async fn reconnect(&self) {
        let known = self.known.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Ok(fresh) = open(&known, self.ca.as_deref()).await {
            *self.conn.write().unwrap_or_else(|e| e.into_inner()) = fresh;
            self.learn_nodes().await;
        }
    }

    /// Runs `op` within `limit`; on a timeout, an I/O error or a redirect
    /// the client did not follow, the connection is replaced before the
    /// error is returned (the caller retries).
    async fn guarded<T>(
        &self,
        limit: Duration,
        op: impl std::future::Future<Output = RedisResult<T>>,
    ) -> RedisResult<T> {
        let result = match tokio::time::timeout(limit, op).await {
            Ok(result) => result,
            Err(_) => Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "no answer from the cluster in time",
            ))),
        };
        if let Err(e) = &result {
            let broken = e.is_io_error()
                || e.is_timeout()
                || e.is_connection_dropped()
                || e.kind() == redis::ErrorKind::ClusterConnectionNotFound
                || crate::error::aborted_by_redirect(e);
            if broken {
                self.reconnect().await;
            }
        }
        result
    }

    /// Runs the pipelines, in parallel, each on the master of its slot;
    /// the replies in the same order. Fails when any fails: then some may
    /// have been applied and others not.
    pub async fn run_parts(&self, parts: &[&Pipeline]) -> RedisResult<Vec<Vec<Value>>> {
        let mut replies = Vec::with_capacity(parts.len());
        for chunk in parts.chunks(PARTS_IN_FLIGHT) {
            let sent = chunk.iter().map(|pipe| {
                let mut conn = self.conn();
                async move { pipe.query_async::<Vec<Value>>(&mut conn).await }
            });
            replies.extend(self.guarded(OPERATION_TIMEOUT, try_join_all(sent)).await?);
        }
        Ok(replies)
    }

    /// Runs single-key commands, in parallel, each on its key's master;
    /// the replies in the same order.
    pub async fn run_commands(&self, commands: &[Cmd]) -> RedisResult<Vec<Value>> {
        let mut replies = Vec::with_capacity(commands.len());
        for chunk in commands.chunks(PARTS_IN_FLIGHT) {
            let sent = chunk.iter().map(|cmd| {
                let mut conn = self.conn();
                async move { cmd.query_async::<Value>(&mut conn).await }
            });
            replies.extend(self.guarded(OPERATION_TIMEOUT, try_join_all(sent)).await?);
        }
        Ok(replies)
    }

    /// A command of no key (`CLUSTER INFO`), asked of any master.
    pub async fn ask_a_master(&self, cmd: Cmd) -> RedisResult<Value> {
        let mut conn = self.conn();
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary);
        self.guarded(OPERATION_TIMEOUT, conn.route_command(cmd, routing))
            .await
    }

    /// The masters that serve slots now, from `CLUSTER SLOTS`.
    pub async fn masters(&self) -> RedisResult<Vec<Node>> {
        let mut conn = self.conn();
        let ranges = self
            .guarded(OPERATION_TIMEOUT, slot_ranges(&mut conn))
            .await?;
        Ok(slot_nodes(ranges, false))
    }

    /// One page of `SCAN cursor MATCH pattern` on one node.
    pub async fn scan_page(
        &self,
        node: &Node,
        pattern: &[u8],
        cursor: u64,
    ) -> RedisResult<(u64, Vec<Bytes>)> {
        let mut conn = self.conn();
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: node.host.clone(),
            port: node.port,
        });
        let reply = self
            .guarded(OPERATION_TIMEOUT, conn.route_command(scan, routing))
            .await?;
        redis::from_redis_value(reply).map_err(Into::into)
    }

    /// `WAIT replicas timeout` on every master that `CLUSTER SLOTS` names,
    /// each addressed by name: the fewest replicas that acknowledged the
    /// writes made on this connection. (The client's own fan-out skips a
    /// master whose connection is down, which would count a group as
    /// replicated while the master that took it is dying.) A master that
    /// cannot be asked is an error.
    pub async fn wait(&self, replicas: u32, timeout: Duration) -> RedisResult<i64> {
        let masters = self.masters().await?;
        let asked = masters.iter().map(|node| {
            let mut conn = self.conn();
            let wait = redis::cmd("WAIT")
                .arg(replicas)
                .arg(timeout.as_millis() as u64)
                .take();
            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                host: node.host.clone(),
                port: node.port,
            });
            async move {
                let reply = conn.route_command(wait, routing).await?;
                redis::from_redis_value::<i64>(reply).map_err(redis::RedisError::from)
            }
        });
        let acked = self
            .guarded(timeout + OPERATION_TIMEOUT, try_join_all(asked))
            .await?;
        acked.into_iter().min().ok_or_else(|| {
            redis::RedisError::from((
                redis::ErrorKind::ClusterConnectionNotFound,
                "CLUSTER SLOTS names no master",
            ))
        })
    }
}

/// `CLUSTER SLOTS`, asked of a master: the client would ask any node, and
/// a replica that hangs (paused, overloaded) would hold up every write.
async fn slot_ranges(conn: &mut ClusterConnection) -> RedisResult<Vec<Vec<Value>>> {
    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary);
    let slots = redis::cmd("CLUSTER").arg("SLOTS").take();
    let reply = conn.route_command(slots, routing).await?;
    redis::from_redis_value(reply).map_err(Into::into)
}

async fn open(nodes: &[String], ca: Option<&[u8]>) -> RedisResult<ClusterConnection> {
    let mut builder = ClusterClientBuilder::new(nodes.to_vec())
        .connection_timeout(Duration::from_secs(5))
        .response_timeout(Duration::from_secs(10))
        // A failover takes a few seconds: past these the stream's own
        // backoff takes over, with the position kept.
        .retries(4);
    if let Some(ca) = ca {
        builder = builder.certs(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(ca.to_vec()),
        });
    }
    builder.build()?.get_async_connection().await
}

/// The distinct nodes of a `CLUSTER SLOTS` reply: each range is
/// `[start, end, [host, port, id, ...], replicas...]`; with `replicas`,
/// those too.
fn slot_nodes(ranges: Vec<Vec<Value>>, replicas: bool) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for range in ranges {
        let take = if replicas { usize::MAX } else { 1 };
        for node in range.into_iter().skip(2).take(take) {
            let Value::Array(fields) = node else { continue };
            let mut fields = fields.into_iter();
            let (Some(host), Some(port)) = (fields.next(), fields.next()) else {
                continue;
            };
            let (Ok(host), Ok(port)) = (
                redis::from_redis_value::<String>(host),
                redis::from_redis_value::<u16>(port),
            ) else {
                continue;
            };
            let node = Node { host, port };
            if !nodes.contains(&node) {
                nodes.push(node);
            }
        }
    }
    nodes
}

/// The URL of a node, with the scheme and credentials of `template`.
fn node_url(template: &str, node: &Node) -> Option<String> {
    let mut url = url::Url::parse(template).ok()?;
    url.set_host(Some(&node.host)).ok()?;
    url.set_port(Some(node.port)).ok()?;
    Some(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_keep_the_seeds_credentials() {
        let node = Node {
            host: "10.0.0.2".into(),
            port: 7001,
        };
        assert_eq!(
            node_url("rediss://app:pw@10.0.0.1:7000", &node).as_deref(),
            Some("rediss://app:pw@10.0.0.2:7001")
        );
    }

    #[test]
    fn slot_nodes_are_masters_then_replicas() {
        let node = |port: i64| {
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let ranges = vec![
            vec![Value::Int(0), Value::Int(5460), node(7000), node(7003)],
            vec![Value::Int(5461), Value::Int(16383), node(7001), node(7004)],
        ];
        let ports = |nodes: Vec<Node>| nodes.into_iter().map(|n| n.port).collect::<Vec<_>>();
        assert_eq!(ports(slot_nodes(ranges.clone(), false)), vec![7000, 7001]);
        assert_eq!(
            ports(slot_nodes(ranges, true)),
            vec![7000, 7003, 7001, 7004]
        );
    }
}
