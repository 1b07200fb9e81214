//! Writing a group to Redis, in a task of its own: while Redis executes one
//! group, the loop builds the next.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::retry::{Backoff, Incident};
use crate::error::Result;
use crate::model::{Bytes, Command};
use crate::position::BinlogPosition;
use crate::sink::RedisSink;
use crate::telemetry::{self, CommandTally, Health};

/// Writes groups as one `MULTI`/`EXEC` each, retrying with backoff while
/// Redis is unreachable, until shutdown.
pub struct GroupWriter {
    sink: RedisSink,
    marker: Bytes,
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
    pub fn new(
        sink: RedisSink,
        marker: Bytes,
        health: Arc<Health>,
        shutdown: CancellationToken,
    ) -> Self {
        GroupWriter {
            sink,
            marker,
            health,
            incident: Incident::new("Redis"),
            shutdown,
        }
    }

    /// Writes `commands` in a task (which also frees them, away from the
    /// loop); `committed` is named in the log while Redis is unreachable.
    pub fn spawn(
        mut self,
        commands: Vec<Command>,
        committed: BinlogPosition,
    ) -> JoinHandle<Written> {
        tokio::spawn(async move {
            let outcome = self.write(&commands, &committed).await;
            Written {
                writer: self,
                commands: CommandTally::of(&commands),
                outcome,
            }
        })
    }

    async fn write(
        &mut self,
        commands: &[Command],
        committed: &BinlogPosition,
    ) -> Result<Option<bool>> {
        let mut backoff = Backoff::new();
        loop {
            match self.sink.write_checked(commands, &self.marker).await {
                Ok(present) => {
                    if self.incident.recovered() {
                        telemetry::reconnect("redis");
                    }
                    self.health.set_redis_up(true);
                    return Ok(Some(present));
                }
                Err(e) if e.is_transient() => {
                    telemetry::redis_error(true);
                    self.health.set_redis_up(false);
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
