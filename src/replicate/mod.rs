//! `replicator run`: the binlog, applied to Redis, checkpointed in RocksDB.
//!
//! The loop: read pieces (committed transactions) from the binlog, group
//! them (by rows and a short deadline), turn the group into Redis commands
//! against the state, write them as one `MULTI`/`EXEC`, and only after Redis
//! acknowledged them commit the state changes and the new position in one
//! RocksDB write. A crash between the two replays the group from the older
//! position against the older state, which writes the same commands again.
//!
//! Lifecycle of the stream, as [`Phase`]: connecting to the binlog,
//! streaming, waiting out an outage; it ends when caught up (with
//! `--exit-when-caught-up`) or on shutdown.

mod retry;

use std::time::Duration;

use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use retry::{Backoff, Incident};

use crate::app::Connected;
use crate::error::{Error, Result};
use crate::model::{apply, finish_group, GroupOutput, Overlay, Timestamp};
use crate::position::BinlogPosition;
use crate::snapshot;
use crate::source::{BinlogReader, Piece};
use crate::state::{Checkpoint, StateBatch, StateReader, StateStore, STATE_FORMAT};
use crate::telemetry::{self, Health, RowTally};

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

/// Where the stream stands.
enum Phase {
    /// Opening the binlog at the checkpoint.
    Connecting,
    /// Waiting before the next attempt, after the source was lost.
    Waiting(Duration),
    /// Done: caught up, or asked to stop.
    Stopped,
}

/// Streams the binlog into Redis from the state's checkpoint until
/// `shutdown` (or, with `exit_when_caught_up`, until the position the
/// server reported at start is applied).
pub async fn stream(
    c: &Connected,
    state: &StateStore,
    options: &StreamOptions,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> Result<()> {
    let checkpoint = state.checkpoint()?.ok_or_else(|| {
        Error::Config("the state directory has no checkpoint: take a snapshot first".into())
    })?;
    let target = match options.exit_when_caught_up {
        true => Some(c.source.current_position().await?),
        false => None,
    };
    let mut replicator = Replicator {
        c,
        state,
        options,
        shutdown,
        checkpoint,
        target,
        redis: Incident::new("Redis"),
        health,
        catch_up: CatchUpLog::new(),
    };
    replicator.health.set_redis_up(true);
    telemetry::checkpoint(
        &replicator.checkpoint.position,
        replicator.checkpoint.committed_at,
    );
    replicator.ensure_namespace().await?;
    replicator.run().await
}

struct Replicator<'a> {
    c: &'a Connected,
    state: &'a StateStore,
    options: &'a StreamOptions,
    shutdown: CancellationToken,
    checkpoint: Checkpoint,
    target: Option<BinlogPosition>,
    redis: Incident,
    health: Arc<Health>,
    catch_up: CatchUpLog,
}

impl Replicator<'_> {
    async fn run(&mut self) -> Result<()> {
        let mut source = Incident::new("the MySQL binlog stream");
        let mut backoff = Backoff::new();
        let mut phase = Phase::Connecting;
        loop {
            phase = match phase {
                Phase::Stopped => return Ok(()),
                _ if self.caught_up() || self.shutdown.is_cancelled() => Phase::Stopped,
                Phase::Waiting(delay) => {
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => Phase::Connecting,
                        _ = self.shutdown.cancelled() => Phase::Stopped,
                    }
                }
                Phase::Connecting => match self.stream_once(&mut source, &mut backoff).await {
                    Ok(()) => Phase::Stopped,
                    Err(e) if e.is_transient() => {
                        self.health.set_mysql_up(false);
                        self.health.set_streaming(false);
                        source.failed(&e, &self.checkpoint.position);
                        Phase::Waiting(backoff.delay())
                    }
                    Err(Error::BinlogUnavailable { file, .. })
                        if self.options.resnapshot_if_needed =>
                    {
                        tracing::warn!(
                            "the checkpoint's binlog file {file} is gone from the server: \
                             taking a fresh snapshot (--resnapshot-if-needed)"
                        );
                        self.resnapshot().await?;
                        Phase::Connecting
                    }
                    Err(e) => return Err(e),
                },
            };
        }
    }

    /// One binlog connection: reads and applies until it breaks, the target
    /// is reached, or shutdown.
    async fn stream_once(&mut self, incident: &mut Incident, backoff: &mut Backoff) -> Result<()> {
        let reader = BinlogReader::open(
            &self.c.source,
            self.options.server_id,
            &self.checkpoint.position,
            self.checkpoint.skip_rows,
            self.options.max_transaction_rows,
        )
        .await?;
        tracing::info!(position = %self.checkpoint.position, "streaming the binlog");
        self.health.set_mysql_up(true);
        self.health.set_streaming(true);
        let (tx, mut rx) = mpsc::channel(64);
        // Read-ahead is bounded by rows, not pieces: a piece may hold up to
        // max_transaction_rows row changes.
        let rows = u32::try_from(self.options.max_transaction_rows * 2).unwrap_or(u32::MAX);
        let reading = tokio::spawn(read_pieces(reader, tx, rows));
        let _stop_reading = AbortOnDrop(reading);
        loop {
            let first = tokio::select! {
                piece = rx.recv() => piece,
                _ = self.shutdown.cancelled() => return Ok(()),
            };
            let first =
                first.ok_or_else(|| Error::SourceLost("the binlog reader stopped".into()))??;
            incident.recovered();
            backoff.reset();
            let (group, deferred) = self.gather(first, &mut rx).await;
            if !self.apply(group).await? {
                return Ok(()); // stopped while Redis was unreachable
            }
            if let Some(e) = deferred {
                return Err(e);
            }
            if self.caught_up() {
                tracing::info!(position = %self.checkpoint.position, "caught up with the server");
                return Ok(());
            }
        }
    }

    /// Collects pieces after `first` until the group is full, its deadline
    /// passes, or a piece ends inside a transaction. A reader error is
    /// returned beside the group, to be raised after the group is applied.
    async fn gather(
        &self,
        first: Budgeted,
        rx: &mut mpsc::Receiver<Result<Budgeted>>,
    ) -> (Vec<Budgeted>, Option<Error>) {
        let deadline = Instant::now() + self.options.group_delay;
        let mut rows = first.piece.changes.len();
        let mut group = vec![first];
        while rows < self.options.group_rows
            && group.last().is_some_and(|b| b.piece.ends_transaction)
        {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Ok(next))) => {
                    rows += next.piece.changes.len();
                    group.push(next);
                }
                Ok(Some(Err(e))) => return (group, Some(e)),
                Ok(None) | Err(_) => break,
            }
        }
        (group, None)
    }

    /// Applies a group: Redis first, then state and checkpoint. Returns
    /// false when shutdown came while Redis was unreachable (nothing
    /// committed; the group is applied again at the next start).
    async fn apply(&mut self, group: Vec<Budgeted>) -> Result<bool> {
        let now = Timestamp::now();
        let keys = &self.c.keys;
        let reader = StateReader::new(self.state);
        let mut overlay = Overlay::new(&reader);
        let mut out = GroupOutput::default();
        let last = &group.last().expect("a group has a piece").piece;
        let (position, skip_rows) = (last.position.clone(), last.skip_rows);
        if !last.ends_transaction {
            tracing::info!(
                rows = skip_rows,
                "a transaction larger than {} rows: applying it in several steps, in order",
                self.options.max_transaction_rows
            );
        }
        let (timestamp, heartbeat) = (last.timestamp, last.heartbeat);
        let mut budget = Vec::with_capacity(group.len());
        let mut transactions = 0;
        let mut tally = RowTally::default();
        for Budgeted {
            piece,
            _rows: permit,
        } in group
        {
            transactions += u64::from(piece.ends_transaction && !piece.changes.is_empty());
            for change in piece.changes {
                tally.add(&change);
                apply(change, &mut overlay, keys, now, &mut out)?;
            }
            budget.push(permit);
        }
        finish_group(&overlay, keys, now, &mut out)?;
        let moved = position != self.checkpoint.position || skip_rows != self.checkpoint.skip_rows;
        if out.commands.is_empty() && !moved {
            self.report_lag(now, timestamp, heartbeat, out.rows);
            return Ok(true);
        }

        let marker_present = match self.write(&out).await? {
            Some(present) => present,
            None => return Ok(false),
        };
        let checkpoint = Checkpoint {
            format: STATE_FORMAT,
            position,
            skip_rows,
            snapshot: self.checkpoint.snapshot.clone(),
            committed_at: now.micros() / 1_000_000,
        };
        self.state
            .commit_unsynced(StateBatch::from_pending(overlay.pending), &checkpoint)?;
        telemetry::group_applied(transactions, &out.commands);
        telemetry::rows_applied(&tally);
        telemetry::checkpoint(&checkpoint.position, checkpoint.committed_at);
        self.checkpoint = checkpoint;
        // Only what Redis acknowledged counts: the lag (and so readiness)
        // moves after the write, never before it.
        self.report_lag(Timestamp::now(), timestamp, heartbeat, out.rows);
        if !marker_present {
            self.rebuild_namespace().await?;
        }
        Ok(true)
    }

    /// Writes the group's commands, retrying while Redis is unreachable.
    /// `None` when shutdown came first.
    async fn write(&mut self, out: &GroupOutput) -> Result<Option<bool>> {
        let marker = self.c.keys.marker();
        let mut backoff = Backoff::new();
        loop {
            match self.c.sink.write_checked(&out.commands, &marker).await {
                Ok(present) => {
                    if self.redis.recovered() {
                        telemetry::reconnect("redis");
                    }
                    self.health.set_redis_up(true);
                    return Ok(Some(present));
                }
                Err(e) if e.is_transient() => {
                    telemetry::redis_error(true);
                    self.health.set_redis_up(false);
                    self.redis.failed(&e, &self.checkpoint.position);
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

    /// Lag: now minus the commit time of the last applied event, or zero
    /// on the server's heartbeat (nothing left to send).
    fn report_lag(&mut self, now: Timestamp, timestamp: u32, heartbeat: bool, rows: u64) {
        let lag = if heartbeat {
            Some(Duration::ZERO)
        } else if timestamp > 0 {
            let behind = now.micros() / 1_000_000 - i64::from(timestamp);
            Some(Duration::from_secs(behind.max(0) as u64))
        } else {
            None
        };
        if let Some(lag) = lag {
            self.health.set_lag(lag);
            telemetry::lag(lag.as_secs_f64());
            self.catch_up.record(rows, lag, &self.checkpoint.position);
        }
    }

    fn caught_up(&self) -> bool {
        self.target
            .as_ref()
            .is_some_and(|t| self.checkpoint.skip_rows == 0 && self.checkpoint.position >= *t)
    }

    /// At start: the namespace must carry this state's snapshot marker.
    async fn ensure_namespace(&mut self) -> Result<()> {
        let marker = self.c.sink.get(&self.c.keys.marker()).await?;
        if marker.as_deref() != Some(self.checkpoint.snapshot.id.as_bytes()) {
            self.rebuild_namespace().await?;
        }
        Ok(())
    }

    /// Redis lost the namespace: write it again from the state alone.
    async fn rebuild_namespace(&mut self) -> Result<()> {
        tracing::warn!(
            "the namespace's marker key is missing in Redis (a restart without persistence, or a flush): \
             rebuilding the namespace from the replicator's state"
        );
        let now = Timestamp::now();
        let (c, state) = (self.c, self.state);
        let stale = snapshot::remove_stale(state, &c.sink, &c.keys, now).await?;
        let written = snapshot::materialize(state, &c.sink, &c.keys, now, &self.shutdown).await?;
        c.sink
            .write(
                &[crate::model::Command::Set {
                    key: c.keys.marker(),
                    value: self.checkpoint.snapshot.id.clone().into_bytes(),
                }],
                false,
            )
            .await?;
        tracing::info!(
            sessions = written.sessions,
            stale,
            "namespace rebuilt from state at {}",
            self.checkpoint.position
        );
        Ok(())
    }

    async fn resnapshot(&mut self) -> Result<()> {
        let (checkpoint, report) = self
            .c
            .snapshot_job(self.state, self.shutdown.clone())
            .run()
            .await?;
        tracing::info!("{report}");
        self.checkpoint = checkpoint;
        Ok(())
    }
}

/// While far behind, a progress line every few seconds.
struct CatchUpLog {
    since: Instant,
    rows: u64,
}

impl CatchUpLog {
    const EVERY: Duration = Duration::from_secs(5);
    const BEHIND: Duration = Duration::from_secs(5);

    fn new() -> Self {
        CatchUpLog {
            since: Instant::now(),
            rows: 0,
        }
    }

    fn record(&mut self, rows: u64, lag: Duration, position: &BinlogPosition) {
        self.rows += rows;
        let elapsed = self.since.elapsed();
        if elapsed >= Self::EVERY {
            if lag >= Self::BEHIND {
                tracing::info!(
                    "catching up: {} row events in {:.0}s ({:.0}/s), {}s behind, at {position}",
                    self.rows,
                    elapsed.as_secs_f64(),
                    self.rows as f64 / elapsed.as_secs_f64(),
                    lag.as_secs()
                );
            }
            *self = CatchUpLog::new();
        }
    }
}

/// A piece with its share of the read-ahead budget, given back on drop.
pub struct Budgeted {
    piece: Piece,
    _rows: OwnedSemaphorePermit,
}

/// Reads pieces into the channel until an error (sent on) or the receiver
/// goes away. Each piece first takes as many of `budget_rows` permits as it
/// has rows, so the pieces read but not yet applied stay bounded.
async fn read_pieces(
    mut reader: BinlogReader,
    tx: mpsc::Sender<Result<Budgeted>>,
    budget_rows: u32,
) {
    let budget = Arc::new(Semaphore::new(budget_rows as usize));
    loop {
        let item = match reader.next().await {
            Ok(piece) => {
                let rows = u32::try_from(piece.changes.len())
                    .unwrap_or(u32::MAX)
                    .min(budget_rows);
                let Ok(permit) = budget.clone().acquire_many_owned(rows).await else {
                    break;
                };
                Ok(Budgeted {
                    piece,
                    _rows: permit,
                })
            }
            Err(e) => Err(e),
        };
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            break;
        }
    }
    reader.close().await;
}

/// Stops the reading task when the stream ends, whichever way.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
