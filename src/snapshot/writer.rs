//! Batches of commands written to Redis by a task of their own, a few
//! pipelines in flight, so that building the next batch and writing the
//! last one overlap.

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use super::pace::Pace;
use crate::error::{Error, Result};
use crate::model::{Bytes, Command};
use crate::sink::RedisSink;
use crate::telemetry;

/// Batches in flight at once.
const BATCHES_IN_FLIGHT: usize = 4;

/// On a cluster with `--redis-wait-replicas`, each batch ends with `WAIT`
/// on its masters: a batch whose replicas lag is written again (it is
/// idempotent) this many times before the snapshot gives up.
const REPLICAS_BEHIND_RETRIES: u32 = 10;

/// The writing task. Each batch is one `MULTI`/`EXEC`, so a reader sees a
/// session either as before or as rewritten, never half-written. Batches
/// reach Redis in the order they were sent, over one connection.
pub struct BatchWriter {
    tx: mpsc::Sender<Vec<Command>>,
    task: JoinHandle<Result<()>>,
}

impl BatchWriter {
    /// With a `marker`, each batch also checks, in its own `MULTI`/`EXEC`,
    /// that the namespace's marker key is still there, and the writing
    /// stops with an error when it is not: Redis lost what was written
    /// before (a restart without persistence, a flush). Batches leave at
    /// the `pace`'s rate.
    pub fn spawn(sink: &RedisSink, marker: Option<Bytes>, pace: &Pace) -> Self {
        let (tx, rx) = mpsc::channel::<Vec<Command>>(BATCHES_IN_FLIGHT * 2);
        let (sink, pace) = (sink.clone(), pace.clone());
        let task = tokio::spawn(async move {
            let writes = ReceiverStream::new(rx)
                .then(|batch| {
                    let pace = pace.clone();
                    async move {
                        pace.admit(batch.len()).await;
                        batch
                    }
                })
                .map(|batch| {
                    let (sink, marker) = (sink.clone(), marker.clone());
                    async move {
                        let mut attempts = 0;
                        let intact = loop {
                            let written = match &marker {
                                None => sink.write(&batch, true).await.map(|()| true),
                                Some(marker) => sink.write_checked(&batch, marker).await,
                            };
                            match written {
                                // Each WAIT already waited its timeout.
                                Err(Error::ReplicasBehind { .. })
                                    if attempts < REPLICAS_BEHIND_RETRIES =>
                                {
                                    attempts += 1;
                                }
                                written => break written,
                            }
                        };
                        if intact? {
                            telemetry::snapshot_commands(batch.len());
                            Ok(())
                        } else {
                            Err(Error::NamespaceLost(
                                "Redis lost the namespace while the snapshot was writing it \
                                 (a restart without persistence, or a flush): \
                                 no checkpoint was written, the next run starts the snapshot again"
                                    .into(),
                            ))
                        }
                    }
                })
                .buffer_unordered(BATCHES_IN_FLIGHT);
            let mut writes = std::pin::pin!(writes);
            while let Some(result) = writes.next().await {
                result?;
            }
            Ok(())
        });
        BatchWriter { tx, task }
    }

    /// A sender for a producer on a blocking thread
    /// (`Sender::blocking_send`).
    pub fn sender(&self) -> mpsc::Sender<Vec<Command>> {
        self.tx.clone()
    }

    /// Queues a batch, waiting while the task is `BATCHES_IN_FLIGHT` behind.
    pub async fn send(&self, batch: Vec<Command>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.tx.send(batch).await.map_err(|_| stopped())
    }

    /// Waits for every queued batch to be written. The error of a failed
    /// write comes first: `produced` (what the producer returned) is
    /// reported only when the writes went well.
    pub async fn finish<T>(self, produced: Result<T>) -> Result<T> {
        drop(self.tx);
        let written = self
            .task
            .await
            .map_err(|e| Error::task("the snapshot's Redis writer", e))?;
        written?;
        produced
    }
}

/// What a producer gets when the writing task stopped (its error is
/// reported by [`BatchWriter::finish`]).
pub fn stopped() -> Error {
    Error::Interrupted("the Redis writer stopped".into())
}
