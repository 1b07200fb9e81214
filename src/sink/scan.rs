//! The namespace as a whole: its marker keys, and `SCAN` of its keys (on
//! a cluster, of every master in turn).

use std::ops::ControlFlow;

use redis::aio::ConnectionManager;
use redis::RedisResult;

use super::cluster::{Cluster, Node};
use super::slots::{marker_keys, slot};
use super::{RedisSink, Scope, Topology};
use crate::error::{Error, Result};
use crate::model::{Bytes, Command};

impl RedisSink {
    /// The namespace's marker keys, with their slots: the one key, or one
    /// per slot on a cluster.
    fn marker_keys(&self, marker: &[u8]) -> Vec<(u16, Bytes)> {
        match &self.topology {
            Topology::Standalone(_) => vec![(slot(marker), marker.to_vec())],
            Topology::Cluster(_) => marker_keys(marker),
        }
    }

    /// The namespace's marker keys: one, or one per slot on a cluster, and
    /// their values.
    pub async fn read_markers(&self, marker: &[u8]) -> Result<Vec<(u16, Option<Bytes>)>> {
        let keys = self.marker_keys(marker);
        let gets = keys
            .iter()
            .map(|(_, k)| redis::cmd("GET").arg(k).take())
            .collect();
        let context = "reading the namespace's marker";
        let values = self.query(gets, context).await?;
        keys.into_iter()
            .zip(values)
            .map(|((s, _), v)| {
                let v = redis::from_redis_value(v).map_err(|e| Error::redis(context, e.into()))?;
                Ok((s, v))
            })
            .collect()
    }

    /// Sets the namespace's marker (of each slot in `scope`, on a
    /// cluster) to the snapshot's id.
    pub async fn set_markers(&self, marker: &[u8], id: &str, scope: &Scope) -> Result<()> {
        let keys = self.marker_keys(marker);
        let sets: Vec<Command> = keys
            .into_iter()
            .filter(|(s, _)| scope.has_slot(*s))
            .map(|(_, key)| Command::Set {
                key,
                value: id.as_bytes().to_vec(),
            })
            .collect();
        self.write(&sets, false).await
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

    /// Hands each page of `SCAN MATCH` of each pattern to `page` (on a
    /// cluster, of every master in turn), until `page` breaks off. A key
    /// may be handed over more than once.
    pub async fn scan_each(
        &self,
        patterns: &[Bytes],
        mut page: impl AsyncFnMut(Vec<Bytes>) -> Result<ControlFlow<()>>,
    ) -> Result<()> {
        let context = "scanning the namespace";
        let targets = match &self.topology {
            Topology::Standalone(conn) => vec![Target::Server(conn)],
            Topology::Cluster(cluster) => cluster
                .masters()
                .await
                .map_err(|e| Error::redis(context, e))?
                .into_iter()
                .map(|node| Target::Master(cluster, node))
                .collect(),
        };
        for target in &targets {
            for pattern in patterns {
                let mut cursor = 0;
                loop {
                    let (next, found) = target
                        .scan_page(pattern, cursor)
                        .await
                        .map_err(|e| Error::redis(context, e))?;
                    if page(found).await?.is_break() {
                        return Ok(());
                    }
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
        }
        Ok(())
    }
}

/// Where a `SCAN` runs: the one server, or one master of a cluster.
enum Target<'a> {
    Server(&'a ConnectionManager),
    Master(&'a Cluster, Node),
}

impl Target<'_> {
    /// One page of `SCAN cursor MATCH pattern`: the next cursor (0 at the
    /// end) and the keys. A key may be reported more than once.
    async fn scan_page(&self, pattern: &[u8], cursor: u64) -> RedisResult<(u64, Vec<Bytes>)> {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        let reply = match self {
            Target::Server(conn) => scan.query_async(&mut (*conn).clone()).await?,
            Target::Master(cluster, node) => cluster.on_node(node, scan).await?,
        };
        redis::from_redis_value(reply).map_err(Into::into)
    }
}
