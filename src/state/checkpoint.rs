//! The checkpoint: where in the binlog the state stands.

use serde::{Deserialize, Serialize};

use crate::position::BinlogPosition;

/// Which snapshot the state (and the Redis namespace) grew from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Unique id, also written to the namespace's marker key.
    pub id: String,
    /// Unix seconds when the snapshot's consistent read began.
    pub taken_at: i64,
    /// The source database the state is a copy of.
    pub database: String,
    /// Where the snapshot's consistent read stood in the binlog.
    pub position: BinlogPosition,
}

/// Version of the state's layout; a state of another version is not read,
/// and the next `run` takes a fresh snapshot.
pub const STATE_FORMAT: u32 = 2;

/// The committed progress of the replicator. Exists only after a complete snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// [`STATE_FORMAT`] of the replicator that wrote the state.
    #[serde(default)]
    pub format: u32,
    /// The state describes the source as of this position...
    pub position: BinlogPosition,
    /// ...plus this many row changes of the transaction that starts there
    /// (non-zero only inside a transaction applied in several steps).
    #[serde(default)]
    pub skip_rows: u64,
    pub snapshot: SnapshotInfo,
    /// Unix seconds of the commit.
    pub committed_at: i64,
}

impl Checkpoint {
    /// Whether this checkpoint stands at another place in the binlog than
    /// `before` (a later one, in the stream).
    pub fn moves_on_from(&self, before: &Checkpoint) -> bool {
        self.position != before.position || self.skip_rows != before.skip_rows
    }
}
