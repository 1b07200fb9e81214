//! The stream's core: groups built, written and committed, in order.
//!
//! Two groups overlap. While the sink writes one (in a task of its own),
//! the loop builds the next over the state with the first one's writes
//! laid on top, and encodes it. The ordering rules, each with a unit test
//! (`tests.rs`):
//!
//! - a group is committed only after the sink acknowledged it;
//! - a group is written only after the one before was acknowledged, and
//!   when committing that one fails, the group written after it is dropped,
//!   never committed;
//! - the stream ends at the group that reaches the target position, before
//!   anything after it is written;
//! - a lost namespace is rebuilt, after its group is committed and before
//!   anything more is written;
//! - on shutdown, the group in flight is acknowledged and committed
//!   (unless the sink is unreachable: then nothing more is committed).
//!
//! So the checkpoint may stand one group behind Redis; a crash replays
//! that group, and writing it again leaves the same Redis.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;

use super::catch_up::CatchUpLog;
use super::flight::{wake, Flight, InFlight, Woken};
use super::group::{self, Group, Limits};
use super::read::{AbortOnDrop, Budgeted};
use super::retry::{patiently, Outage};
use super::sink::{GroupSink, Namespace};
use super::store::GroupStore;
use super::writer::{GroupWrite, GroupWriter, Written};
use crate::error::{Error, Result};
use crate::model::{Keys, Timestamp};
use crate::position::BinlogPosition;
use crate::sink::Scope;
use crate::state::Checkpoint;
use crate::telemetry::{self, CommandTally, Health};

/// The groups of one stream, from the last committed checkpoint on.
pub struct Pipeline<'a, K, T> {
    sink: K,
    store: &'a T,
    keys: &'a Keys,
    limits: Limits,
    /// With `--exit-when-caught-up`: the stream ends once a checkpoint
    /// reaches this position.
    target: Option<BinlogPosition>,
    health: Arc<Health>,
    shutdown: CancellationToken,
    /// The last committed checkpoint.
    checkpoint: Checkpoint,
    catch_up: CatchUpLog,
}

/// The sink's acknowledgment of a group.
struct Ack {
    commands: CommandTally,
    namespace: Namespace,
}

impl<'a, K: GroupSink, T: GroupStore> Pipeline<'a, K, T> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sink: K,
        store: &'a T,
        keys: &'a Keys,
        limits: Limits,
        checkpoint: Checkpoint,
        target: Option<BinlogPosition>,
        health: Arc<Health>,
        shutdown: CancellationToken,
    ) -> Self {
        Pipeline {
            sink,
            store,
            keys,
            limits,
            target,
            health,
            shutdown,
            checkpoint,
            catch_up: CatchUpLog::new(),
        }
    }

    /// The last committed checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// Starts again from a fresh snapshot's checkpoint.
    pub fn restart_at(&mut self, checkpoint: Checkpoint) {
        self.checkpoint = checkpoint;
    }

    /// At start: the namespace must carry this state's snapshot marker,
    /// or it is rebuilt from the state.
    pub async fn ensure_namespace(&mut self) -> Result<()> {
        let (sink, checkpoint) = (&self.sink, &self.checkpoint);
        let (id, position) = (&checkpoint.snapshot.id, &checkpoint.position);
        let namespace = patiently("Redis", position, &self.shutdown, async || {
            sink.namespace(id).await
        })
        .await?;
        if let Namespace::Lost(lost) = namespace {
            self.rebuild(&lost).await?;
        }
        Ok(())
    }

    /// Rebuilds the lost part of the namespace from the committed state,
    /// waiting out Redis outages (a rebuild written twice leaves the same
    /// Redis).
    async fn rebuild(&self, lost: &Scope) -> Result<()> {
        let (sink, checkpoint) = (&self.sink, &self.checkpoint);
        patiently("Redis", &checkpoint.position, &self.shutdown, async || {
            sink.rebuild(checkpoint, lost).await
        })
        .await
    }

    /// Applies the pieces of `rx` until the reader ends or fails, the
    /// target is reached, or shutdown. However it ends, the group in flight
    /// is settled (acknowledged and committed) before it returns, unless a
    /// failure makes committing it wrong. `source`: told when a piece
    /// arrives, which ends an outage of the source.
    pub async fn run(
        &mut self,
        rx: &mut mpsc::Receiver<Result<Budgeted>>,
        source: &mut Outage,
    ) -> Result<()> {
        let writer = GroupWriter::new(
            self.sink.clone(),
            self.health.clone(),
            self.shutdown.clone(),
        );
        let mut flight = Flight::Idle(writer);
        loop {
            flight = match wake(flight, rx, &self.shutdown).await {
                Woken::Stop(flight) => return self.settle(flight).await,
                Woken::Piece(flight, None) => {
                    self.settle(flight).await?;
                    return Err(Error::SourceLost("the binlog reader stopped".into()));
                }
                Woken::Piece(flight, Some(Err(e))) => {
                    self.settle(flight).await?;
                    return Err(e);
                }
                Woken::Piece(flight, Some(Ok(first))) => {
                    source.recovered();
                    let (gathered, failed) = group::gather(first, rx, self.limits).await;
                    let Some(flight) = self.next_group(flight, gathered).await? else {
                        return Ok(());
                    };
                    if let Some(e) = failed {
                        self.settle(flight).await?;
                        return Err(e);
                    }
                    flight
                }
                Woken::Written(landed) => {
                    let Some((writer, ack)) = self.acknowledged(landed.written)? else {
                        return Ok(()); // stopped while Redis was unreachable
                    };
                    self.commit(landed.group, landed.batch, ack).await?;
                    if self.caught_up()? {
                        tracing::info!(position = %self.checkpoint.position, "caught up with the server");
                        return Ok(());
                    }
                    Flight::Idle(writer)
                }
            };
        }
    }

    /// Builds a group of the gathered pieces over the state and the group
    /// in flight, and hands it to the sink. `None` when the stream ends
    /// instead (see [`Self::hand_over`]).
    async fn next_group(
        &mut self,
        flight: Flight<K, T>,
        gathered: group::Gathered,
    ) -> Result<Option<Flight<K, T>>> {
        let built = {
            let view = self.store.view();
            group::build(
                gathered,
                &view,
                flight.pending(),
                self.keys,
                &self.checkpoint.snapshot,
            )
        };
        let (group, commands) = match built {
            Ok(built) => built,
            Err(e) => {
                // The groups before it are applied: the checkpoint stands
                // right before the piece that failed.
                self.settle(flight).await?;
                return Err(e);
            }
        };
        let write = GroupWrite::encode(&self.sink, commands);
        self.hand_over(flight, group, write).await
    }

    /// Writes `group` once the group in flight, if any, is acknowledged,
    /// and commits that one while the sink writes `group`. `None` when the
    /// stream ends instead: shutdown came while Redis was unreachable, or
    /// the group in flight reached the target (`group` is then not written;
    /// it is read again at the next start).
    async fn hand_over(
        &mut self,
        flight: Flight<K, T>,
        group: Group,
        write: GroupWrite<K::Encoded>,
    ) -> Result<Option<Flight<K, T>>> {
        let before = match flight {
            Flight::Idle(writer) => {
                let moved = group.checkpoint.moves_on_from(&self.checkpoint);
                return Ok(Some(self.launch(writer, group, write, moved)));
            }
            Flight::Writing(before) => before.land().await,
        };
        let Some((writer, ack)) = self.acknowledged(before.written)? else {
            return Ok(None);
        };
        let moved = group.checkpoint.moves_on_from(&before.group.checkpoint);
        let lost = matches!(ack.namespace, Namespace::Lost(_));
        if lost || self.reaches_target(&before.group.checkpoint)? {
            // The namespace is rebuilt, or the stream ends, before anything
            // more is written.
            self.commit(before.group, before.batch, ack).await?;
            if self.caught_up()? {
                return Ok(None);
            }
            return Ok(Some(self.launch(writer, group, write, moved)));
        }
        let next = self.launch(writer, group, write, moved);
        // Should this commit fail, `next` is dropped with its write task:
        // it is never committed over the missing group, and both are
        // applied again at the next start.
        self.commit(before.group, before.batch, ack).await?;
        Ok(Some(next))
    }

    /// Starts writing a group, or, when it changes nothing (and the sink
    /// has no check due), only reports the lag it shows. `moved`: whether it moves the checkpoint on from
    /// the group before.
    fn launch(
        &mut self,
        writer: GroupWriter<K>,
        group: Group,
        write: GroupWrite<K::Encoded>,
        moved: bool,
    ) -> Flight<K, T> {
        if write.is_empty() && !moved && !self.sink.check_due() {
            self.report_lag(group.timestamp, group.heartbeat, group.rows);
            return Flight::Idle(writer);
        }
        let task = AbortOnDrop(writer.spawn(write, self.checkpoint.position.clone()));
        let pending = group.pending.clone();
        let batch = tokio::task::spawn_blocking(move || T::encode(&pending));
        Flight::Writing(Box::new(InFlight { group, task, batch }))
    }

    /// Waits for the group in flight, if any, and commits it.
    async fn settle(&mut self, flight: Flight<K, T>) -> Result<()> {
        let Flight::Writing(f) = flight else {
            return Ok(());
        };
        let landed = f.land().await;
        match self.acknowledged(landed.written)? {
            Some((_, ack)) => self.commit(landed.group, landed.batch, ack).await,
            None => Ok(()),
        }
    }

    /// A write task's end: the writer, and the sink's answer. `None` when
    /// shutdown came before the sink acknowledged the group (nothing is
    /// committed; the group is applied again at the next start).
    fn acknowledged(
        &self,
        written: std::result::Result<Written<K>, JoinError>,
    ) -> Result<Option<(GroupWriter<K>, Ack)>> {
        let Written {
            writer,
            commands,
            outcome,
        } = written.map_err(|e| Error::task("the Redis write of a group", e))?;
        Ok(outcome?.map(|namespace| {
            (
                writer,
                Ack {
                    commands,
                    namespace,
                },
            )
        }))
    }

    /// After the sink acknowledged a group: its state writes and checkpoint
    /// go to the store in one write. Then a lost namespace is rebuilt.
    async fn commit(&mut self, group: Group, batch: JoinHandle<T::Batch>, ack: Ack) -> Result<()> {
        let batch = batch
            .await
            .map_err(|e| Error::task("the state encoding of a group", e))?;
        let Group {
            pending,
            checkpoint,
            transactions,
            tally,
            rows,
            timestamp,
            heartbeat,
            budget,
        } = group;
        self.store.commit(batch, &checkpoint)?;
        drop(budget);
        // A group's rows are many small allocations: freed off the loop.
        tokio::task::spawn_blocking(move || drop(pending));
        telemetry::group_applied(transactions, &ack.commands);
        telemetry::rows_applied(&tally);
        telemetry::checkpoint(&checkpoint.position, checkpoint.committed_at);
        self.checkpoint = checkpoint;
        // Only what Redis acknowledged counts: the lag (and so readiness)
        // moves after the write, never before it.
        self.report_lag(timestamp, heartbeat, rows);
        if let Namespace::Lost(lost) = &ack.namespace {
            self.rebuild(lost).await?;
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

    /// Whether the committed checkpoint reached the target.
    pub fn caught_up(&self) -> Result<bool> {
        self.reaches_target(&self.checkpoint)
    }

    fn reaches_target(&self, checkpoint: &Checkpoint) -> Result<bool> {
        let Some(target) = &self.target else {
            return Ok(false);
        };
        let order = checkpoint.position.compare(target).map_err(|e| {
            Error::Prerequisite(format!(
                "{e}. Take a fresh snapshot (`replicator snapshot`) to start from the server's \
                 binlog as it is named now"
            ))
        })?;
        Ok(checkpoint.skip_rows == 0 && order.is_ge())
    }
}
