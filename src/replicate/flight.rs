//! The write side of the pipeline as a value: idle, or one group in
//! flight, and what the loop wakes up for.

use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;

use super::group::Group;
use super::read::{AbortOnDrop, Budgeted};
use super::sink::GroupSink;
use super::store::GroupStore;
use super::writer::{GroupWriter, Written};
use crate::error::Result;
use crate::model::Pending;

/// The write side: idle, or one group in flight.
pub(super) enum Flight<K: GroupSink, T: GroupStore> {
    /// Nothing in flight: the writer is at hand.
    Idle(GroupWriter<K>),
    /// A group is being written; the writer is away in its task.
    Writing(Box<InFlight<K, T>>),
}

/// A group the sink is writing.
pub(super) struct InFlight<K: GroupSink, T: GroupStore> {
    pub(super) group: Group,
    /// Gives the writer back with the sink's answer.
    pub(super) task: AbortOnDrop<Written<K>>,
    /// The group's write set, encoded for the store meanwhile.
    pub(super) batch: JoinHandle<T::Batch>,
}

/// A group whose write task ended.
pub(super) struct Landed<K: GroupSink, T: GroupStore> {
    pub(super) group: Group,
    pub(super) batch: JoinHandle<T::Batch>,
    pub(super) written: std::result::Result<Written<K>, JoinError>,
}

impl<K: GroupSink, T: GroupStore> InFlight<K, T> {
    pub(super) async fn land(mut self: Box<Self>) -> Landed<K, T> {
        let written = (&mut self.task.0).await;
        let InFlight { group, batch, .. } = *self;
        Landed {
            group,
            batch,
            written,
        }
    }
}

impl<K: GroupSink, T: GroupStore> Flight<K, T> {
    /// The writes of the group in flight, for the next group to read through.
    pub(super) fn pending(&self) -> Option<&Pending> {
        match self {
            Flight::Idle(_) => None,
            Flight::Writing(f) => Some(&f.group.pending),
        }
    }
}

/// What the loop woke up for. (Made once per wake-up and taken apart at
/// once: the size of its variants does not matter.)
#[allow(clippy::large_enum_variant)]
pub(super) enum Woken<K: GroupSink, T: GroupStore> {
    /// A piece, an error of the reader, or the reader's end (`None`).
    Piece(Flight<K, T>, Option<Result<Budgeted>>),
    /// The group in flight was written (or failed to be).
    Written(Landed<K, T>),
    Stop(Flight<K, T>),
}

/// Waits for a piece, the group in flight's write, or shutdown.
pub(super) async fn wake<K: GroupSink, T: GroupStore>(
    flight: Flight<K, T>,
    rx: &mut mpsc::Receiver<Result<Budgeted>>,
    shutdown: &CancellationToken,
) -> Woken<K, T> {
    match flight {
        Flight::Idle(writer) => tokio::select! {
            piece = rx.recv() => Woken::Piece(Flight::Idle(writer), piece),
            _ = shutdown.cancelled() => Woken::Stop(Flight::Idle(writer)),
        },
        Flight::Writing(mut f) => {
            enum Next<W> {
                Piece(Option<Result<Budgeted>>),
                Written(W),
                Stop,
            }
            let next = tokio::select! {
                piece = rx.recv() => Next::Piece(piece),
                written = &mut f.task.0 => Next::Written(written),
                _ = shutdown.cancelled() => Next::Stop,
            };
            match next {
                Next::Piece(piece) => Woken::Piece(Flight::Writing(f), piece),
                Next::Stop => Woken::Stop(Flight::Writing(f)),
                Next::Written(written) => {
                    let InFlight { group, batch, .. } = *f;
                    Woken::Written(Landed {
                        group,
                        batch,
                        written,
                    })
                }
            }
        }
    }
}
