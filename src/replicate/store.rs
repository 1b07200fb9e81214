//! The seam between the stream and its state: [`GroupStore`], and its
//! RocksDB implementation.

use crate::error::Result;
use crate::model::{Pending, StateView};
use crate::state::{Checkpoint, StateBatch, StateReader, StateStore};

/// The state the stream builds groups over and commits them to.
///
/// The contract: [`GroupStore::commit`] writes a group's rows and its
/// checkpoint in one atomic write, so that the state never stands at a
/// checkpoint without the rows that lead to it, nor the other way round.
/// The stream commits a group only after the sink acknowledged it, and in
/// order, so the checkpoint never moves past what Redis holds, and never
/// moves backward.
pub trait GroupStore: Send + Sync {
    /// A read view of the committed state.
    type View<'a>: StateView
    where
        Self: 'a;
    /// A group's write set, encoded for the commit away from the loop.
    type Batch: Send + 'static;

    fn view(&self) -> Self::View<'_>;

    fn encode(pending: &Pending) -> Self::Batch;

    fn commit(&self, batch: Self::Batch, checkpoint: &Checkpoint) -> Result<()>;
}

impl GroupStore for StateStore {
    type View<'a> = StateReader<'a>;
    type Batch = StateBatch;

    fn view(&self) -> StateReader<'_> {
        StateReader::new(self)
    }

    fn encode(pending: &Pending) -> StateBatch {
        StateBatch::from_pending(pending)
    }

    /// Unsynced ([`StateStore::commit_unsynced`]): a power loss may lose
    /// the last whole commits, which the stream then applies again.
    fn commit(&self, batch: StateBatch, checkpoint: &Checkpoint) -> Result<()> {
        self.commit_unsynced(batch, checkpoint)
    }
}
