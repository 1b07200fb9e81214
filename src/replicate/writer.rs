//! Writing a group to Redis, in a task of its own: while Redis executes one
//! group, the loop builds the next.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use redis::Pipeline;

use super::retry::{Backoff, Incident};
use crate::error::Result;
use crate::model::Command;
use crate::position::BinlogPosition;
use crate::sink::{checked_transaction, RedisSink};
use crate::telemetry::{self, CommandTally, Health};

/// A group's commands encoded as the one `MULTI`/`EXEC` that writes them.
/// Encoded by the loop while Redis still executes the group before, so that
/// Redis does not wait for it.
pub struct GroupWrite {
    transaction: Pipeline,
    tally: CommandTally,
    /// Kept to be freed by the write task, away from the loop.
    commands: Vec<Command>,
}

impl GroupWrite {
    /// `marker`: the namespace's marker key, checked inside the transaction.
    pub fn encode(commands: Vec<Command>, marker: &[u8]) -> Self {
        GroupWrite {
            transaction: checked_transaction(&commands, marker),
            tally: CommandTally::of(&commands),
            commands,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }
}

/// Writes groups as one `MULTI`/`EXEC` each, retrying with backoff while
/// Redis is unreachable, until shutdown.
pub struct GroupWriter {
    sink: RedisSink,
    health: Arc<Health>,
    incident: Incident,
    shutdown: CancellationToken,
}

/// What a write task gives back: the writer, the commands it wrote by kind,
/// and the outcome: whether the namespace's marker key was there, or `None`
/// when shutdown came before Redis acknowledged the group.
pub struct Written {
    pub writer: GroupWriter,
    pub commands: CommandTally,
    pub outcome: Result<Option<bool>>,
}

impl GroupWriter {
    pub fn new(sink: RedisSink, health: Arc<Health>, shutdown: CancellationToken) -> Self {
        GroupWriter {
            sink,
            health,
            incident: Incident::new("Redis"),
            shutdown,
        }
    }

    /// Writes the group in a task (which also frees its commands, away
    /// from the loop); `committed` is named in the log while Redis is
    /// unreachable.
    pub fn spawn(mut self, write: GroupWrite, committed: BinlogPosition) -> JoinHandle<Written> {
        tokio::spawn(async move {
            let outcome = self.write(&write.transaction, &committed).await;
            Written {
                writer: self,
                commands: write.tally,
                outcome,
            }
        })
    }

    async fn write(
        &mut self,
        transaction: &Pipeline,
        committed: &BinlogPosition,
    ) -> Result<Option<bool>> {
        let mut backoff = Backoff::new();
        loop {
            match self.sink.exec_checked(transaction).await {
                Ok(present) => {
                    if self.incident.recovered() {
                        telemetry::reconnect("redis");
                    }
                    self.health.set_redis_up(true);
                    self.health.set_redis_full(false);
                    return Ok(Some(present));
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
