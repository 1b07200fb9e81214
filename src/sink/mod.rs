//! The Redis side: connecting, writing batches of model commands, scanning
//! the namespace, on one Redis server or a Redis Cluster.
//!
//! Writes are idempotent (whole-hash rewrites, `HSET`/`HDEL` of values from
//! the state, `DEL`), so a batch that is written twice after a crash leaves
//! the same Redis. A broken connection is rebuilt by the connection manager
//! (standalone) or the cluster client (which also follows `MOVED`, `ASK`
//! and failovers).
//!
//! On a cluster a batch is split by hash slot ([`slots`]): each slot's
//! commands are one part (one `MULTI`/`EXEC` where the batch is atomic),
//! and each master gets its slots' parts as one pipeline, every master at
//! once. The namespace's marker
//! is then one key per slot, so that a master that lost its data shows in
//! the slots it serves, and only those are rebuilt.

mod cluster;
mod connect;
mod encode;
mod scan;
mod slots;

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{Cmd, Pipeline, Value};

pub use encode::{checked_transaction, pipeline};
pub use slots::{slot, Scope, SLOTS};

use cluster::Cluster;
use slots::split_by_slot;

use crate::error::{Error, Result};
use crate::model::{Bytes, Command};

/// A connection to the Redis that holds the model. Cheap to clone: clones
/// share the same connections.
#[derive(Clone)]
pub struct RedisSink {
    topology: Topology,
    redacted_url: String,
    wait: Option<WaitReplicas>,
}

#[derive(Clone)]
enum Topology {
    /// One server (or the primary of a replication group).
    Standalone(ConnectionManager),
    Cluster(Cluster),
}

/// `--redis-wait-replicas`: how many replicas must have a group's writes
/// before its checkpoint moves, and how long to wait for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitReplicas {
    pub replicas: u32,
    pub timeout: Duration,
}

/// A batch of commands encoded for the topology, each part one
/// `MULTI`/`EXEC` that ends with `EXISTS` of its marker key.
pub enum CheckedBatch {
    One(Pipeline),
    /// One transaction per slot.
    PerSlot(Vec<(u16, Pipeline)>),
}

impl RedisSink {
    /// With `wait`, [`Self::wait_for_replicas`] waits for that many
    /// replicas of every master.
    pub fn with_wait(mut self, wait: Option<WaitReplicas>) -> Self {
        self.wait = wait.filter(|w| w.replicas > 0);
        self
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.topology, Topology::Cluster(_))
    }

    pub fn redacted_url(&self) -> &str {
        &self.redacted_url
    }

    /// Writes the commands as one pipeline (on a cluster: one per slot);
    /// with `atomic`, wrapped in `MULTI`/`EXEC` so that no reader sees part
    /// of it (on a cluster: part of any one key).
    pub async fn write(&self, commands: &[Command], atomic: bool) -> Result<()> {
        if commands.is_empty() {
            return Ok(());
        }
        let context = "writing a batch";
        match &self.topology {
            Topology::Standalone(conn) => pipeline(commands.iter(), atomic)
                .query_async::<()>(&mut conn.clone())
                .await
                .map_err(|e| Error::redis(context, e)),
            Topology::Cluster(cluster) => {
                let parts: Vec<(u16, Pipeline)> = split_by_slot(commands)
                    .into_iter()
                    .map(|(s, part)| (s, pipeline(part.into_iter(), atomic)))
                    .collect();
                self.run_on_cluster(cluster, &parts, context)
                    .await
                    .map(drop)
            }
        }
    }

    /// The commands as `MULTI`/`EXEC` transactions (one, or one per slot)
    /// that each end with `EXISTS` of the namespace's marker key (of that
    /// slot): encoded ahead, while Redis is busy with the batch before.
    pub fn encode_checked(&self, commands: &[Command], marker: &[u8]) -> CheckedBatch {
        match &self.topology {
            Topology::Standalone(_) => {
                CheckedBatch::One(checked_transaction(commands.iter(), marker))
            }
            Topology::Cluster(_) => CheckedBatch::PerSlot(
                split_by_slot(commands)
                    .into_iter()
                    .map(|(s, part)| {
                        let marker = slots::marker_for_slot(marker, s);
                        (s, checked_transaction(part.into_iter(), &marker))
                    })
                    .collect(),
            ),
        }
    }

    /// Writes the commands as by [`Self::exec_checked`]; whether the
    /// namespace's marker was there for every part.
    pub async fn write_checked(&self, commands: &[Command], marker: &[u8]) -> Result<bool> {
        let batch = self.encode_checked(commands, marker);
        Ok(self.exec_checked(&batch).await?.is_none())
    }

    /// Runs a batch made by [`Self::encode_checked`] and reports, from
    /// inside the transactions that wrote, where the namespace's marker is
    /// missing: there Redis lost the namespace (a restart without
    /// persistence, a flush) and it must be rebuilt. `None`: nothing lost.
    pub async fn exec_checked(&self, batch: &CheckedBatch) -> Result<Option<Scope>> {
        let context = "writing a group of transactions";
        match (&self.topology, batch) {
            (Topology::Standalone(conn), CheckedBatch::One(pipe)) => {
                let replies: Vec<Value> = pipe
                    .query_async(&mut conn.clone())
                    .await
                    .map_err(|e| Error::redis(context, e))?;
                Ok((!marker_exists(replies, context)?).then_some(Scope::All))
            }
            (Topology::Cluster(cluster), CheckedBatch::PerSlot(parts)) => {
                let replies = self.run_on_cluster(cluster, parts, context).await?;
                let mut lost = Vec::new();
                for ((s, _), replies) in parts.iter().zip(replies) {
                    if !marker_exists(replies, context)? {
                        lost.push(*s);
                    }
                }
                Ok((!lost.is_empty()).then(|| Scope::of_slots(lost)))
            }
            _ => Err(Error::Config(
                "a batch encoded for another Redis topology".into(),
            )),
        }
    }

    /// The parts on the cluster, one pipeline per master; with
    /// `--redis-wait-replicas`, each ends with `WAIT`, and fewer replicas
    /// than asked on any master is an outage ([`Error::ReplicasBehind`]):
    /// the caller writes the batch again and keeps the position.
    async fn run_on_cluster(
        &self,
        cluster: &Cluster,
        parts: &[(u16, Pipeline)],
        context: &str,
    ) -> Result<Vec<Vec<Value>>> {
        let wait = self.wait.map(|w| (w.replicas, w.timeout));
        let (replies, fewest) = cluster
            .run_parts(parts, wait)
            .await
            .map_err(|e| Error::redis(context, e))?;
        self.enough_replicas(fewest)?;
        Ok(replies)
    }

    /// With `--redis-wait-replicas`: waits until that many replicas
    /// acknowledged the writes made so far (`WAIT`). Fewer within the
    /// timeout is an outage: the caller writes the group again and keeps
    /// the position. On a cluster every write already waited, in its own
    /// pipeline: nothing is left to wait for.
    pub async fn wait_for_replicas(&self) -> Result<()> {
        let (Some(wait), Topology::Standalone(conn)) = (self.wait, &self.topology) else {
            return Ok(());
        };
        let acked: i64 = redis::cmd("WAIT")
            .arg(wait.replicas)
            .arg(wait.timeout.as_millis() as u64)
            .query_async(&mut conn.clone())
            .await
            .map_err(|e| Error::redis("waiting for the replicas (WAIT)", e))?;
        self.enough_replicas(Some(acked))
    }

    /// Whether `acked` (the fewest replicas a `WAIT` reported; `None`:
    /// none was sent) meets `--redis-wait-replicas`.
    fn enough_replicas(&self, acked: Option<i64>) -> Result<()> {
        match (self.wait, acked) {
            (Some(wait), Some(acked)) if acked < i64::from(wait.replicas) => {
                Err(Error::ReplicasBehind {
                    acked,
                    wanted: wait.replicas,
                    timeout: wait.timeout,
                })
            }
            _ => Ok(()),
        }
    }

    /// The value of a string key.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        let reply = self
            .query(vec![redis::cmd("GET").arg(key).take()], "reading a key")
            .await?
            .pop()
            .unwrap_or(Value::Nil);
        redis::from_redis_value(reply).map_err(|e| Error::redis("reading a key", e.into()))
    }

    /// Runs commands of one key each and returns their replies, in order:
    /// one pipeline on a standalone server; on a cluster, one pipeline per
    /// master, or, when that fails (a slot moving, a master failing over),
    /// each command alone, with the client following redirects.
    pub async fn query(&self, commands: Vec<Cmd>, what: &str) -> Result<Vec<Value>> {
        match &self.topology {
            Topology::Standalone(conn) => {
                let mut pipe = Pipeline::with_capacity(commands.len());
                for cmd in commands {
                    pipe.add_command(cmd);
                }
                pipe.query_async(&mut conn.clone())
                    .await
                    .map_err(|e| Error::redis(what, e))
            }
            Topology::Cluster(cluster) => {
                let parts: Vec<(u16, Pipeline)> = commands
                    .iter()
                    .map(|cmd| {
                        let mut part = Pipeline::with_capacity(1);
                        part.add_command(cmd.clone());
                        (slot_of_command(cmd), part)
                    })
                    .collect();
                if let Ok((replies, _)) = cluster.run_parts(&parts, None).await {
                    return Ok(replies
                        .into_iter()
                        .map(|mut reply| reply.pop().unwrap_or(Value::Nil))
                        .collect());
                }
                cluster
                    .run_commands(&commands)
                    .await
                    .map_err(|e| Error::redis(what, e))
            }
        }
    }
}

/// The slot of a command of one key: its first argument's.
fn slot_of_command(cmd: &Cmd) -> u16 {
    match cmd.args_iter().nth(1) {
        Some(redis::Arg::Simple(key)) => slot(key),
        _ => 0,
    }
}

/// The last reply of a checked transaction is its `EXISTS`; none at all is
/// not a lost namespace, which would rebuild it, but an error.
fn marker_exists(mut replies: Vec<Value>, context: &str) -> Result<bool> {
    let Some(exists) = replies.pop() else {
        let empty = (
            redis::ErrorKind::UnexpectedReturnType,
            "EXEC returned no replies",
        );
        return Err(Error::redis(context, empty.into()));
    };
    redis::from_redis_value(exists).map_err(|e| Error::redis(context, e.into()))
}
