//! `replicator run`: the binlog, applied to Redis, checkpointed in RocksDB.
//!
//! The loop: read pieces (committed transactions) from the binlog, group
//! them (by rows and a short deadline), turn the group into Redis commands
//! against the state, write them as one transaction, and only after Redis
//! acknowledged them commit the state changes and the new position in one
//! RocksDB write. A crash between the two replays the group from the older
//! position against the older state, which writes the same commands again.
//!
//! - [`pipeline`] keeps that order, with two groups overlapping, behind two
//!   seams: [`GroupSink`] (Redis) and [`GroupStore`] (the state).
//! - [`group`] builds a group; [`writer`] writes one, retrying while Redis
//!   is unreachable; [`read`] reads the binlog ahead of the loop.
//! - This file runs the stream's lifecycle ([`Phase`]): connecting to the
//!   binlog, streaming, waiting out an outage of the source, taking a fresh
//!   snapshot where that is allowed; it ends when caught up (with
//!   `--exit-when-caught-up`) or on shutdown.

mod catch_up;
mod flight;
mod group;
mod pipeline;
mod read;
mod retry;
mod sink;
mod store;
mod writer;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use retry::patiently;
pub use sink::{GroupSink, Namespace, RedisGroups};
pub use store::GroupStore;

use group::Limits;
use pipeline::Pipeline;
use read::{read_pieces, AbortOnDrop};
use retry::Outage;

use crate::error::{Error, Result};
use crate::model::Keys;
use crate::source::{BinlogReader, MySqlSource};
use crate::state::{Checkpoint, StateStore};
use crate::telemetry::{self, Health};

/// How a stream is run.
#[derive(Clone, Debug)]
pub struct StreamOptions {
    pub server_id: u32,
    pub exit_when_caught_up: bool,
    pub resnapshot_if_needed: bool,
    /// A transaction larger than this is applied in several steps.
    pub max_transaction_rows: usize,
    /// A group closes at this many row changes...
    pub group_rows: usize,
    /// ...or this long after its first piece arrived.
    pub group_delay: Duration,
}

impl StreamOptions {
    pub fn new(server_id: u32) -> Self {
        StreamOptions {
            server_id,
            exit_when_caught_up: false,
            resnapshot_if_needed: false,
            max_transaction_rows: 50_000,
            group_rows: 5_000,
            group_delay: Duration::from_millis(2),
        }
    }
}

/// What a stream runs between.
pub struct Stream<'a, K> {
    pub source: &'a MySqlSource,
    pub sink: K,
    pub state: &'a StateStore,
    pub keys: &'a Keys,
    pub options: &'a StreamOptions,
    pub health: Arc<Health>,
    pub shutdown: CancellationToken,
}

/// Where the stream's lifecycle stands.
enum Phase {
    /// Opening the binlog at the checkpoint.
    Connecting,
    /// Waiting before the next attempt, after the source was lost.
    Waiting(Duration),
    /// Done: caught up, or asked to stop.
    Stopped,
}

impl<K: GroupSink> Stream<'_, K> {
    /// Streams the binlog into Redis from the state's checkpoint until
    /// shutdown (or, with `exit_when_caught_up`, until the position the
    /// server reported at start is applied). `resnapshot` takes a fresh
    /// snapshot, where `--resnapshot-if-needed` allows one.
    pub async fn run(self, mut resnapshot: impl AsyncFnMut() -> Result<Checkpoint>) -> Result<()> {
        let checkpoint = self.state.checkpoint()?.ok_or_else(|| {
            Error::Config("the state directory has no checkpoint: take a snapshot first".into())
        })?;
        let target = match self.options.exit_when_caught_up {
            true => Some(self.source.current_position().await?),
            false => None,
        };
        let limits = Limits {
            rows: self.options.group_rows,
            delay: self.options.group_delay,
        };
        telemetry::checkpoint(&checkpoint.position, checkpoint.committed_at);
        self.health.set_redis_up(true);
        let mut pipeline = Pipeline::new(
            self.sink.clone(),
            self.state,
            self.keys,
            limits,
            checkpoint,
            target,
            self.health.clone(),
            self.shutdown.clone(),
        );
        pipeline.ensure_namespace().await?;
        let mut source = Outage::new("the MySQL binlog stream");
        let mut phase = Phase::Connecting;
        loop {
            phase = match phase {
                Phase::Stopped => break,
                _ if pipeline.caught_up()? || self.shutdown.is_cancelled() => Phase::Stopped,
                Phase::Waiting(delay) => {
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => Phase::Connecting,
                        _ = self.shutdown.cancelled() => Phase::Stopped,
                    }
                }
                Phase::Connecting => match self.connect(&mut pipeline, &mut source).await {
                    Ok(()) => Phase::Stopped,
                    Err(e) if e.is_transient() => {
                        self.health.set_mysql_up(false);
                        self.health.set_streaming(false);
                        Phase::Waiting(source.failed(&e, &pipeline.checkpoint().position))
                    }
                    Err(Error::BinlogUnavailable { file, .. })
                        if self.options.resnapshot_if_needed =>
                    {
                        tracing::warn!(
                            "the checkpoint's binlog file {file} is gone from the server: \
                             taking a fresh snapshot (--resnapshot-if-needed)"
                        );
                        pipeline.restart_at(resnapshot().await?);
                        Phase::Connecting
                    }
                    Err(e @ Error::Unappliable { .. }) => {
                        telemetry::stream_stopped();
                        if !self.options.resnapshot_if_needed {
                            // Unhealthy before the exit, so that nothing
                            // routes reads here while the error is logged.
                            self.health.set_stopped();
                            return Err(e);
                        }
                        tracing::warn!(
                            "{e}. Taking a fresh snapshot instead (--resnapshot-if-needed)"
                        );
                        pipeline.restart_at(resnapshot().await?);
                        Phase::Connecting
                    }
                    Err(e) => return Err(e),
                },
            };
        }
        // A clean stop writes the state's memtables to its files: the next
        // start then replays no write-ahead log into memtables, and the
        // last commits no longer wait in an unsynced log.
        self.state.persist()
    }

    /// One binlog connection, read ahead in a task of its own, applied by
    /// the pipeline until it breaks, the target is reached, or shutdown.
    async fn connect(
        &self,
        pipeline: &mut Pipeline<'_, K, StateStore>,
        source: &mut Outage,
    ) -> Result<()> {
        let checkpoint = pipeline.checkpoint();
        let reader = BinlogReader::open(
            self.source,
            self.options.server_id,
            &checkpoint.position,
            checkpoint.skip_rows,
            self.options.max_transaction_rows,
        )
        .await?;
        tracing::info!(position = %checkpoint.position, "streaming the binlog");
        self.health.set_mysql_up(true);
        self.health.set_streaming(true);
        let (tx, mut rx) = mpsc::channel(64);
        // Read-ahead is bounded by rows, not pieces: a piece may hold up to
        // max_transaction_rows row changes, and the budget holds one such.
        let rows = u32::try_from(self.options.max_transaction_rows).unwrap_or(u32::MAX);
        let _stop_reading = AbortOnDrop(tokio::spawn(read_pieces(reader, tx, rows)));
        pipeline.run(&mut rx, source).await
    }
}
