//! `replicator run`: the binlog, applied to Redis, checkpointed in RocksDB.
//!
//! The loop: read pieces (committed transactions) from the binlog, group
//! them (by rows and a short deadline), turn the group into Redis commands
//! against the state, write them as one `MULTI`/`EXEC`, and only after Redis
//! acknowledged them commit the state changes and the new position in one
//! RocksDB write. A crash between the two replays the group from the older
//! position against the older state, which writes the same commands again.
//!
//! Two groups overlap: while Redis executes one (in a task of its own), the
//! loop builds the next over the state with the first one's writes laid on
//! top, and encodes its transaction, so that Redis waits for as little as
//! possible between the two. Writes to Redis and commits stay in order: a
//! group is written only after the one before it was acknowledged, and the
//! one before is committed while Redis executes it (after it, when it ends
//! the stream or finds the namespace lost). So the checkpoint may be one
//! group further behind Redis than it would be otherwise; a crash replays
//! both groups, which writes the same commands again.
//!
//! Lifecycle of the stream, as [`Phase`]: connecting to the binlog,
//! streaming, waiting out an outage; it ends when caught up (with
//! `--exit-when-caught-up`) or on shutdown.

mod catch_up;
mod read;
mod retry;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use catch_up::CatchUpLog;
use read::{read_pieces, AbortOnDrop, Budgeted};
use retry::{Backoff, Incident};
use writer::{GroupWrite, GroupWriter, Written};

use crate::app::Connected;
use crate::error::{Error, Result};
use crate::model::Pending;
use crate::model::{
    apply_content, finish_group, prefetch, Command, Content, GroupOutput, Overlay, Timestamp,
};
use crate::position::BinlogPosition;
use crate::snapshot;
use crate::source::BinlogReader;
use crate::state::{Checkpoint, StateBatch, StateReader, StateStore, STATE_FORMAT};
use crate::telemetry::{self, CommandTally, Health, RowTally};

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
    let writer = GroupWriter::new(c.sink.clone(), health.clone(), shutdown.clone());
    let mut replicator = Replicator {
        c,
        state,
        options,
        shutdown,
        checkpoint,
        target,
        health,
        catch_up: CatchUpLog::new(),
        writer: Some(writer),
        in_flight: None,
    };
    replicator.health.set_redis_up(true);
    telemetry::checkpoint(
        &replicator.checkpoint.position,
        replicator.checkpoint.committed_at,
    );
    replicator.ensure_namespace().await?;
    replicator.run().await?;
    // A clean stop writes the state's memtables to its files: the next
    // start then replays no write-ahead log into memtables (8% of the
    // replicator's instructions in a W2 run of 100k row events), and the
    // last commits no longer wait in an unsynced log.
    state.persist()
}

struct Replicator<'a> {
    c: &'a Connected,
    state: &'a StateStore,
    options: &'a StreamOptions,
    shutdown: CancellationToken,
    /// The last committed checkpoint.
    checkpoint: Checkpoint,
    target: Option<BinlogPosition>,
    health: Arc<Health>,
    catch_up: CatchUpLog,
    /// Idle, or away in the task of the group in flight.
    writer: Option<GroupWriter>,
    in_flight: Option<InFlight>,
}

/// A group turned into Redis commands and state writes.
struct Group {
    /// Shared with the task that encodes it for RocksDB while Redis
    /// executes the commands.
    pending: Arc<Pending>,
    checkpoint: Checkpoint,
    transactions: u64,
    tally: RowTally,
    rows: u64,
    /// The commit time of its last event, and whether that was the
    /// server's heartbeat.
    timestamp: u32,
    heartbeat: bool,
    /// Its share of the read-ahead budget, held until it is committed.
    _budget: Vec<OwnedSemaphorePermit>,
}

/// Redis's answer to a group's transaction.
struct Ack {
    commands: CommandTally,
    /// Whether the namespace's marker key was there.
    marker_present: bool,
}

/// A group whose commands are being written to Redis.
struct InFlight {
    group: Group,
    task: JoinHandle<Written>,
    batch: JoinHandle<StateBatch>,
}

/// What the loop waits for next.
enum Next {
    Piece(Option<Result<Budgeted>>),
    Written(std::result::Result<Written, JoinError>),
    Stop,
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
                        self.resnapshot().await?;
                        Phase::Connecting
                    }
                    Err(e) => return Err(e),
                },
            };
        }
    }

    /// One binlog connection: reads and applies until it breaks, the target
    /// is reached, or shutdown. However it ends, the group in flight is
    /// settled (acknowledged and committed) before it returns.
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
        // max_transaction_rows row changes, and the budget holds one such.
        let rows = u32::try_from(self.options.max_transaction_rows).unwrap_or(u32::MAX);
        let _stop_reading = AbortOnDrop(tokio::spawn(read_pieces(reader, tx, rows)));
        let streamed = self.pump(&mut rx, incident, backoff).await;
        let settled = self.settle().await;
        streamed.and(settled.map(|_| ()))
    }

    async fn pump(
        &mut self,
        rx: &mut mpsc::Receiver<Result<Budgeted>>,
        incident: &mut Incident,
        backoff: &mut Backoff,
    ) -> Result<()> {
        loop {
            let next = tokio::select! {
                piece = rx.recv() => Next::Piece(piece),
                written = written(&mut self.in_flight) => Next::Written(written),
                _ = self.shutdown.cancelled() => Next::Stop,
            };
            let first = match next {
                Next::Stop => return Ok(()),
                Next::Written(written) => {
                    let InFlight { group, batch, .. } =
                        self.in_flight.take().expect("a group is in flight");
                    let Some(ack) = self.acknowledged(written)? else {
                        return Ok(()); // stopped while Redis was unreachable
                    };
                    self.commit(group, batch, ack).await?;
                    if self.caught_up() {
                        tracing::info!(position = %self.checkpoint.position, "caught up with the server");
                        return Ok(());
                    }
                    continue;
                }
                Next::Piece(piece) => {
                    piece.ok_or_else(|| Error::SourceLost("the binlog reader stopped".into()))??
                }
            };
            incident.recovered();
            backoff.reset();
            let (pieces, deferred) = self.gather(first, rx).await;
            // Built and encoded while the group before is still in flight...
            let (group, commands) = self.prepare(pieces)?;
            let write = GroupWrite::encode(commands, &self.c.keys.marker());
            // ...which must be acknowledged before this one is written.
            if !self.hand_over(group, write).await? {
                return Ok(());
            }
            if let Some(e) = deferred {
                return Err(e);
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
        let mut rows = first.piece.content.rows();
        let mut group = vec![first];
        while rows < self.options.group_rows
            && group.last().is_some_and(|b| b.piece.ends_transaction)
        {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Ok(next))) => {
                    rows += next.piece.content.rows();
                    group.push(next);
                }
                Ok(Some(Err(e))) => return (group, Some(e)),
                Ok(None) | Err(_) => break,
            }
        }
        (group, None)
    }

    /// Turns pieces into Redis commands and state writes, over the state
    /// with the group in flight (if any) laid on top.
    fn prepare(&self, pieces: Vec<Budgeted>) -> Result<(Group, Vec<Command>)> {
        let now = Timestamp::now();
        let keys = &self.c.keys;
        let reader = StateReader::new(self.state);
        let below = self.in_flight.as_ref().map(|f| &*f.group.pending);
        let mut overlay = Overlay::over(&reader, below);
        let mut out = GroupOutput::default();
        let last = &pieces.last().expect("a group has a piece").piece;
        let checkpoint = Checkpoint {
            format: STATE_FORMAT,
            position: last.position.clone(),
            skip_rows: last.skip_rows,
            snapshot: self.checkpoint.snapshot.clone(),
            committed_at: now.micros() / 1_000_000,
        };
        if !last.ends_transaction {
            tracing::info!(
                rows = last.skip_rows,
                "a transaction larger than {} rows: applying it in several steps, in order",
                self.options.max_transaction_rows
            );
        }
        let (timestamp, heartbeat) = (last.timestamp, last.heartbeat);
        let mut budget = Vec::with_capacity(pieces.len());
        let mut transactions = 0;
        let mut tally = RowTally::default();
        let changes = pieces.iter().flat_map(|b| match &b.piece.content {
            Content::Rows(changes) => changes.as_slice(),
            _ => &[],
        });
        prefetch(changes, &overlay)?;
        for Budgeted { piece, rows } in pieces {
            transactions += u64::from(piece.ends_transaction && !piece.content.is_progress());
            if let Content::Rows(changes) = &piece.content {
                changes.iter().for_each(|change| tally.add(change));
            }
            let told = describe(&piece.content);
            let n = apply_content(
                piece.content,
                &mut overlay,
                keys,
                now,
                &mut out,
                &piece.position,
            )?;
            if let Some(what) = told {
                tracing::info!(rows = n, position = %piece.position, "{what}");
            }
            budget.push(rows);
        }
        finish_group(&overlay, keys, now, &mut out)?;
        let group = Group {
            pending: Arc::new(overlay.pending),
            checkpoint,
            transactions,
            tally,
            rows: out.rows,
            timestamp,
            heartbeat,
            _budget: budget,
        };
        Ok((group, out.commands))
    }

    /// Starts writing a group, or, when it changes nothing, only reports the
    /// lag it shows. `moved`: whether it moves the checkpoint on from the
    /// group before.
    fn launch(&mut self, group: Group, write: GroupWrite, moved: bool) {
        if write.is_empty() && !moved {
            self.report_lag(group.timestamp, group.heartbeat, group.rows);
            return;
        }
        let writer = self.writer.take().expect("no group is in flight");
        let task = writer.spawn(write, self.checkpoint.position.clone());
        let pending = group.pending.clone();
        let batch = tokio::task::spawn_blocking(move || StateBatch::from_pending(&pending));
        self.in_flight = Some(InFlight { group, task, batch });
    }

    /// Writes `group` once the group in flight, if any, is acknowledged,
    /// and commits that one while Redis executes `group`. False when the
    /// stream ends instead: shutdown came while Redis was unreachable, or
    /// the group in flight reached the target (`group` is then not written;
    /// it is read again at the next start).
    async fn hand_over(&mut self, group: Group, write: GroupWrite) -> Result<bool> {
        let Some(before) = self.in_flight.take() else {
            let moved = group.checkpoint.moves_on_from(&self.checkpoint);
            self.launch(group, write, moved);
            return Ok(true);
        };
        let Some(ack) = self.acknowledged(before.task.await)? else {
            return Ok(false);
        };
        let moved = group.checkpoint.moves_on_from(&before.group.checkpoint);
        if !ack.marker_present || self.reaches_target(&before.group.checkpoint) {
            // The namespace is rebuilt, or the stream ends, before anything
            // more is written.
            self.commit(before.group, before.batch, ack).await?;
            if self.caught_up() {
                return Ok(false);
            }
            self.launch(group, write, moved);
            return Ok(true);
        }
        self.launch(group, write, moved);
        if let Err(e) = self.commit(before.group, before.batch, ack).await {
            // The group just launched must never be committed over the
            // missing one: it is dropped, with its writer, and both groups
            // are applied again at the next start.
            if let Some(after) = self.in_flight.take() {
                after.task.abort();
                self.writer = Some(GroupWriter::new(
                    self.c.sink.clone(),
                    self.health.clone(),
                    self.shutdown.clone(),
                ));
            }
            return Err(e);
        }
        Ok(true)
    }

    /// Waits for the group in flight, if any, and commits it. False when
    /// shutdown came while Redis was unreachable.
    async fn settle(&mut self) -> Result<bool> {
        let Some(InFlight { group, task, batch }) = self.in_flight.take() else {
            return Ok(true);
        };
        match self.acknowledged(task.await)? {
            Some(ack) => self.commit(group, batch, ack).await.map(|()| true),
            None => Ok(false),
        }
    }

    /// A write task's end: the writer comes back, and Redis's answer. `None`
    /// when shutdown came before Redis acknowledged the group (nothing is
    /// committed; the group is applied again at the next start).
    fn acknowledged(
        &mut self,
        written: std::result::Result<Written, JoinError>,
    ) -> Result<Option<Ack>> {
        let Written {
            writer,
            commands,
            outcome,
        } = written.map_err(task_failed)?;
        self.writer = Some(writer);
        Ok(outcome?.map(|marker_present| Ack {
            commands,
            marker_present,
        }))
    }

    /// After Redis acknowledged a group: its state writes and checkpoint go
    /// to RocksDB in one write.
    async fn commit(
        &mut self,
        group: Group,
        batch: JoinHandle<StateBatch>,
        ack: Ack,
    ) -> Result<()> {
        let Ack {
            commands,
            marker_present,
        } = ack;
        let batch = batch.await.map_err(task_failed)?;
        let Group {
            pending,
            checkpoint,
            transactions,
            tally,
            rows,
            timestamp,
            heartbeat,
            _budget,
        } = group;
        self.state.commit_unsynced(batch, &checkpoint)?;
        // A group's rows are many small allocations: freed off the loop.
        tokio::task::spawn_blocking(move || drop(pending));
        telemetry::group_applied(transactions, &commands);
        telemetry::rows_applied(&tally);
        telemetry::checkpoint(&checkpoint.position, checkpoint.committed_at);
        self.checkpoint = checkpoint;
        // Only what Redis acknowledged counts: the lag (and so readiness)
        // moves after the write, never before it.
        self.report_lag(timestamp, heartbeat, rows);
        if !marker_present {
            self.rebuild_namespace().await?;
        }
        Ok(())
    }

    /// Lag: now minus the commit time of the last applied event, or zero
    /// on the server's heartbeat (nothing left to send).
    fn report_lag(&mut self, timestamp: u32, heartbeat: bool, rows: u64) {
        let lag = if heartbeat {
            Some(Duration::ZERO)
        } else if timestamp > 0 {
            let behind = Timestamp::now().micros() / 1_000_000 - i64::from(timestamp);
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
        self.reaches_target(&self.checkpoint)
    }

    fn reaches_target(&self, checkpoint: &Checkpoint) -> bool {
        self.target
            .as_ref()
            .is_some_and(|t| checkpoint.skip_rows == 0 && checkpoint.position >= *t)
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
                &[Command::Set {
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

/// What the log says of a piece that is not plain row changes.
fn describe(content: &Content) -> Option<String> {
    match content {
        Content::Rows(_) => None,
        Content::Truncate(table) => Some(format!(
            "TRUNCATE TABLE {}: every row of it removed, without cascade, as MySQL does",
            table.name()
        )),
        Content::XaPrepare { xid, .. } => Some(format!(
            "XA PREPARE {xid}: its row changes are held until XA COMMIT or XA ROLLBACK"
        )),
        Content::XaCommit(xid) => Some(format!("XA COMMIT {xid}: its held row changes applied")),
        Content::XaRollback(xid) => {
            Some(format!("XA ROLLBACK {xid}: its held row changes dropped"))
        }
    }
}

fn task_failed(e: JoinError) -> Error {
    Error::Interrupted(format!("a streaming task failed: {e}"))
}

/// The group in flight's write, or never when none is.
async fn written(in_flight: &mut Option<InFlight>) -> std::result::Result<Written, JoinError> {
    match in_flight {
        Some(f) => (&mut f.task).await,
        None => std::future::pending().await,
    }
}
