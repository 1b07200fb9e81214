//! Redis Cluster: the `redis` crate's cluster client, which keeps the slot
//! map, one connection per node, and follows `MOVED` and `ASK` (resharding)
//! and failovers. Here: a batch written as one pipeline per master, each
//! slot's part of it one transaction, all masters at once, with `WAIT` at
//! the end of each pipeline when the writes must reach replicas; reads
//! spread by key; `SCAN` on every master.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::try_join_all;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisResult, Value};

/// Single-key reads sent at once; the next ones go when all of these are
/// answered.
const READS_IN_FLIGHT: usize = 1024;

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
    /// Which master serves each slot, as `CLUSTER SLOTS` said when last
    /// asked; forgotten when a write fails, asked again before the next.
    map: Arc<RwLock<Option<Arc<SlotMap>>>>,
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

impl Node {
    /// Sends a request to this node, whatever the slots' owners.
    fn route(&self) -> SingleNodeRoutingInfo {
        SingleNodeRoutingInfo::ByAddress {
            host: self.host.clone(),
            port: self.port,
        }
    }
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
            map: Arc::new(RwLock::new(None)),
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
            self.forget_map();
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

    /// Runs the parts, each the commands of one slot (a transaction when
    /// the part is one), as one pipeline per master that the slot map
    /// names, all masters at once. With `wait` (replicas, timeout), each
    /// master's pipeline ends with `WAIT`: its count covers exactly these
    /// writes, sent on that same connection, whatever connection or node
    /// the client had to use. The replies of each part (of a transaction:
    /// its `EXEC`'s), in order, and the fewest replicas a master
    /// acknowledged. Any error fails the whole call (a stale map, a
    /// redirect, a node down): some parts may have been applied and others
    /// not, and the caller writes them all again.
    pub async fn run_parts(
        &self,
        parts: &[(u16, Pipeline)],
        wait: Option<(u32, Duration)>,
    ) -> RedisResult<(Vec<Vec<Value>>, Option<i64>)> {
        let map = self.slot_map().await?;
        let mut batches: Vec<Option<MasterBatch>> = (0..map.masters.len()).map(|_| None).collect();
        for (index, (slot, part)) in parts.iter().enumerate() {
            let Some(owner) = map.owner(*slot) else {
                self.forget_map();
                return Err(redis::RedisError::from((
                    redis::ErrorKind::ClusterConnectionNotFound,
                    "no master serves a slot that the batch writes",
                    format!("slot {slot}"),
                )));
            };
            batches[owner]
                .get_or_insert_with(MasterBatch::default)
                .add(index, part);
        }
        let sent = batches
            .into_iter()
            .zip(&map.masters)
            .filter_map(|(batch, node)| Some((batch?, node)))
            .map(|(mut batch, node)| {
                if let Some((replicas, timeout)) = wait {
                    batch
                        .pipe
                        .cmd("WAIT")
                        .arg(replicas)
                        .arg(timeout.as_millis() as u64);
                    batch.len += 1;
                }
                let mut conn = self.conn();
                let route = node.route();
                async move {
                    let replies = conn.route_pipeline(batch.pipe, 0, batch.len, route).await?;
                    // Any error among them, also inside an `EXEC`, fails it.
                    let replies = match Value::Array(replies).extract_error()? {
                        Value::Array(replies) => replies,
                        other => vec![other],
                    };
                    Ok::<_, redis::RedisError>((batch.parts, replies))
                }
            });
        let limit = OPERATION_TIMEOUT + wait.map_or(Duration::ZERO, |(_, t)| t);
        let answered = match self.guarded(limit, try_join_all(sent)).await {
            Ok(answered) => answered,
            Err(e) => {
                self.forget_map();
                return Err(e);
            }
        };
        let mut replies: Vec<Vec<Value>> = vec![Vec::new(); parts.len()];
        let mut fewest: Option<i64> = None;
        for (placed, mut values) in answered {
            if wait.is_some() {
                let acked = values
                    .pop()
                    .map(redis::from_redis_value::<i64>)
                    .transpose()?;
                fewest = fewest.into_iter().chain(acked).min();
            }
            let mut values = values.into_iter();
            for Placed {
                part,
                count,
                atomic,
            } in placed
            {
                let mut of_part: Vec<Value> = values.by_ref().take(count).collect();
                replies[part] = if atomic {
                    match of_part.pop() {
                        Some(Value::Array(exec)) => exec,
                        _ => {
                            return Err(redis::RedisError::from((
                                redis::ErrorKind::UnexpectedReturnType,
                                "a transaction's EXEC returned no array",
                            )))
                        }
                    }
                } else {
                    of_part
                };
            }
        }
        Ok((replies, fewest))
    }

    /// The slot map, asked of a master when none is known.
    async fn slot_map(&self) -> RedisResult<Arc<SlotMap>> {
        if let Some(map) = self.map.read().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(map);
        }
        let mut conn = self.conn();
        let ranges = self
            .guarded(OPERATION_TIMEOUT, slot_ranges(&mut conn))
            .await?;
        let map = Arc::new(SlotMap::of(ranges));
        *self.map.write().unwrap_or_else(|e| e.into_inner()) = Some(map.clone());
        Ok(map)
    }

    fn forget_map(&self) {
        *self.map.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Runs single-key commands, in parallel, each on its key's master;
    /// the replies in the same order.
    pub async fn run_commands(&self, commands: &[Cmd]) -> RedisResult<Vec<Value>> {
        let mut replies = Vec::with_capacity(commands.len());
        for chunk in commands.chunks(READS_IN_FLIGHT) {
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

    /// A command of no key (`SCAN`), run on one node.
    pub async fn on_node(&self, node: &Node, cmd: Cmd) -> RedisResult<Value> {
        let mut conn = self.conn();
        let routing = RoutingInfo::SingleNode(node.route());
        self.guarded(OPERATION_TIMEOUT, conn.route_command(cmd, routing))
            .await
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

/// Which master serves each slot.
struct SlotMap {
    masters: Vec<Node>,
    /// Per slot, its master's index in `masters`.
    owners: Vec<Option<u16>>,
}

impl SlotMap {
    /// From a `CLUSTER SLOTS` reply: `[start, end, [host, port, ...], replicas...]`.
    fn of(ranges: Vec<Vec<Value>>) -> SlotMap {
        let mut map = SlotMap {
            masters: Vec::new(),
            owners: vec![None; super::SLOTS],
        };
        for range in ranges {
            let mut fields = range.into_iter();
            let (Some(start), Some(end), Some(master)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let (Ok(start), Ok(end), Some(master)) = (
                redis::from_redis_value::<usize>(start),
                redis::from_redis_value::<usize>(end),
                node_of(master),
            ) else {
                continue;
            };
            let index = match map.masters.iter().position(|m| *m == master) {
                Some(index) => index,
                None => {
                    map.masters.push(master);
                    map.masters.len() - 1
                }
            };
            for owner in map.owners.iter_mut().take(end + 1).skip(start) {
                *owner = Some(index as u16);
            }
        }
        map
    }

    fn owner(&self, slot: u16) -> Option<usize> {
        self.owners
            .get(usize::from(slot))
            .copied()
            .flatten()
            .map(usize::from)
    }
}

/// One master's pipeline of a batch, and where each part's replies are.
#[derive(Default)]
struct MasterBatch {
    pipe: Pipeline,
    len: usize,
    parts: Vec<Placed>,
}

/// A part's replies in its master's pipeline: the next `count` of them.
struct Placed {
    part: usize,
    count: usize,
    atomic: bool,
}

impl MasterBatch {
    fn add(&mut self, part: usize, commands: &Pipeline) {
        let atomic = commands.is_transaction();
        let before = self.len;
        if atomic {
            self.pipe.cmd("MULTI");
            self.len += 1;
        }
        for cmd in commands.cmd_iter() {
            self.pipe.add_command(cmd.clone());
            self.len += 1;
        }
        if atomic {
            self.pipe.cmd("EXEC");
            self.len += 1;
        }
        self.parts.push(Placed {
            part,
            count: self.len - before,
            atomic,
        });
    }
}

/// A node of a `CLUSTER SLOTS` reply: `[host, port, id, ...]`.
fn node_of(value: Value) -> Option<Node> {
    let Value::Array(fields) = value else {
        return None;
    };
    let mut fields = fields.into_iter();
    let host = redis::from_redis_value::<String>(fields.next()?).ok()?;
    let port = redis::from_redis_value::<u16>(fields.next()?).ok()?;
    Some(Node { host, port })
}

/// The distinct nodes of a `CLUSTER SLOTS` reply: each range is
/// `[start, end, [host, port, id, ...], replicas...]`; with `replicas`,
/// those too.
fn slot_nodes(ranges: Vec<Vec<Value>>, replicas: bool) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for range in ranges {
        let take = if replicas { usize::MAX } else { 1 };
        for node in range.into_iter().skip(2).take(take).filter_map(node_of) {
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

    /// A node as `CLUSTER SLOTS` lists it.
    fn node(port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(b"127.0.0.1".to_vec()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    #[test]
    fn the_slot_map_names_each_slots_master() {
        let ranges = vec![
            vec![Value::Int(0), Value::Int(99), node(7000), node(7003)],
            vec![Value::Int(100), Value::Int(16000), node(7001)],
            vec![Value::Int(16001), Value::Int(16383), node(7000)],
        ];
        let map = SlotMap::of(ranges);
        let port = |slot: u16| map.owner(slot).map(|m| map.masters[m].port);
        assert_eq!(map.masters.len(), 2);
        assert_eq!(port(0), Some(7000));
        assert_eq!(port(99), Some(7000));
        assert_eq!(port(100), Some(7001));
        assert_eq!(port(16000), Some(7001));
        assert_eq!(port(16383), Some(7000));
        let partial = SlotMap::of(vec![vec![Value::Int(0), Value::Int(10), node(7000)]]);
        assert_eq!(partial.owner(11), None);
    }

    #[test]
    fn a_master_batch_places_each_parts_replies() {
        let mut transaction = Pipeline::new();
        transaction.atomic().cmd("HSET").arg("k").arg("f").arg("v");
        transaction.cmd("EXISTS").arg("m");
        let mut plain = Pipeline::new();
        plain.cmd("DEL").arg("x");
        let mut batch = MasterBatch::default();
        batch.add(3, &transaction);
        batch.add(5, &plain);
        // MULTI, HSET, EXISTS, EXEC; then DEL.
        assert_eq!(batch.len, 5);
        assert_eq!(batch.pipe.cmd_iter().count(), 5);
        let placed: Vec<_> = batch
            .parts
            .iter()
            .map(|p| (p.part, p.count, p.atomic))
            .collect();
        assert_eq!(placed, vec![(3, 4, true), (5, 1, false)]);
    }

    #[test]
    fn slot_nodes_are_masters_then_replicas() {
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
