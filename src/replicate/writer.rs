//! Writing a group to the sink, in a task of its own: while Redis executes
//! one group, the loop builds the next. This is the one place that decides
//! which sink errors are retried.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::retry::{Backoff, Incident};
use super::sink::{GroupSink, Namespace};
use crate::error::Result;
use crate::model::Command;
use crate::position::BinlogPosition;
use crate::telemetry::{self, CommandTally, Health};

/// A group's commands encoded for the sink. Encoded by the loop while the
/// sink still writes the group before, so that Redis does not wait for it.
pub struct GroupWrite<E> {
    encoded: E,
    tally: CommandTally,
    /// Kept to be freed by the write task, away from the loop.
    commands: Vec<Command>,
}

impl<E> GroupWrite<E> {
    pub fn encode<K: GroupSink<Encoded = E>>(sink: &K, commands: Vec<Command>) -> Self {
        GroupWrite {
            encoded: sink.encode(&commands),
            tally: CommandTally::of(&commands),
            commands,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }
}

/// Writes groups, retrying with backoff while the sink's errors are
/// transient, until shutdown.
pub struct GroupWriter<K> {
    sink: K,
    health: Arc<Health>,
    incident: Incident,
    shutdown: CancellationToken,
}

/// What a write task gives back: the writer, the commands it wrote by kind,
/// and the outcome: what the sink said of the namespace, or `None` when
/// shutdown came before the sink acknowledged the group.
pub struct Written<K> {
    pub writer: GroupWriter<K>,
    pub commands: CommandTally,
    pub outcome: Result<Option<Namespace>>,
}

impl<K: GroupSink> GroupWriter<K> {
    pub fn new(sink: K, health: Arc<Health>, shutdown: CancellationToken) -> Self {
        GroupWriter {
            sink,
            health,
            incident: Incident::new("Redis"),
            shutdown,
        }
    }

    /// Writes the group in a task (which also frees its commands, away
    /// from the loop); `committed` is named in the log while the sink is
    /// unreachable.
    pub fn spawn(
        mut self,
        write: GroupWrite<K::Encoded>,
        committed: BinlogPosition,
    ) -> JoinHandle<Written<K>> {
        tokio::spawn(async move {
            let outcome = self.write(&write.encoded, &committed).await;
            Written {
                writer: self,
                commands: write.tally,
                outcome,
            }
        })
    }

    async fn write(
        &mut self,
        encoded: &K::Encoded,
        committed: &BinlogPosition,
    ) -> Result<Option<Namespace>> {
        let mut backoff = Backoff::new();
        loop {
            match self.sink.write(encoded).await {
                Ok(namespace) => {
                    if self.incident.recovered() {
                        telemetry::reconnect("redis");
                    }
                    self.health.set_redis_up(true);
                    self.health.set_redis_full(false);
                    return Ok(Some(namespace));
                }
                Err(e) if e.is_transient() => {
                    telemetry::redis_error(true);
                    match e.is_redis_out_of_memory() {
                        true => self.health.set_redis_full(true),
                        false => self.health.set_redis_up(false),
                    }
                    self.incident.failed(&e, committed);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.delay()) => {}
                        _ = self.shutdown.cancelled() => {
                            tracing::warn!("stopping before Redis acknowledged the group in flight; it is applied again at the next start");
                            return Ok(None);
                        }
                    }
                }
                Err(e) => {
                    telemetry::redis_error(false);
                    return Err(e);
                }
            }
        }
    }
}
