//! Building a group: pieces (committed transactions, or steps of a large
//! one) gathered from the reader, turned into Redis commands and state
//! writes over the state with the group in flight laid on top.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::time::Instant;

use super::read::Budgeted;
use crate::error::{Error, Result};
use crate::model::{
    apply_content, finish_group, prefetch, Command, Content, GroupOutput, Keys, Overlay, Pending,
    StateView, Timestamp,
};
use crate::position::BinlogPosition;
use crate::source::Piece;
use crate::state::{Checkpoint, SnapshotInfo, STATE_FORMAT};
use crate::telemetry::RowTally;

/// A group turned into Redis commands and state writes.
pub struct Group {
    /// Shared with the task that encodes it for the state while Redis
    /// executes the commands.
    pub pending: Arc<Pending>,
    pub checkpoint: Checkpoint,
    pub transactions: u64,
    pub tally: RowTally,
    pub rows: u64,
    /// The commit time of its last event, and whether that was the
    /// server's heartbeat.
    pub timestamp: u32,
    pub heartbeat: bool,
    /// Its share of the read-ahead budget, held until it is committed.
    pub budget: Vec<OwnedSemaphorePermit>,
}

/// When a group closes.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// At this many row changes...
    pub rows: usize,
    /// ...or this long after its first piece arrived.
    pub delay: Duration,
}

/// The pieces of one group, at least one.
pub struct Gathered {
    pieces: Vec<Budgeted>,
    /// The last piece's place: where the group's checkpoint stands.
    last: Place,
}

/// Where a piece ends, and when the server wrote it.
struct Place {
    position: BinlogPosition,
    skip_rows: u64,
    ends_transaction: bool,
    timestamp: u32,
    heartbeat: bool,
}

impl Place {
    fn of(piece: &Piece) -> Self {
        Place {
            position: piece.position.clone(),
            skip_rows: piece.skip_rows,
            ends_transaction: piece.ends_transaction,
            timestamp: piece.timestamp,
            heartbeat: piece.heartbeat,
        }
    }
}

/// Collects pieces after `first` until the group is full, its deadline
/// passes, or a piece ends inside a transaction. A reader error is returned
/// beside the group, to be raised after the group is applied.
pub async fn gather(
    first: Budgeted,
    rx: &mut mpsc::Receiver<Result<Budgeted>>,
    limits: Limits,
) -> (Gathered, Option<Error>) {
    let deadline = Instant::now() + limits.delay;
    let mut rows = first.piece.content.rows();
    let mut last = Place::of(&first.piece);
    let mut pieces = vec![first];
    let mut failed = None;
    while rows < limits.rows && last.ends_transaction {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Ok(next))) => {
                rows += next.piece.content.rows();
                last = Place::of(&next.piece);
                pieces.push(next);
            }
            Ok(Some(Err(e))) => {
                failed = Some(e);
                break;
            }
            Ok(None) | Err(_) => break,
        }
    }
    (Gathered { pieces, last }, failed)
}

/// Turns pieces into Redis commands and state writes, over `base` with
/// `below` (the group in flight, if any) laid on top. `snapshot`: the
/// snapshot the state grew from, carried into the group's checkpoint.
pub fn build<V: StateView>(
    gathered: Gathered,
    base: &V,
    below: Option<&Pending>,
    keys: &Keys,
    snapshot: &SnapshotInfo,
) -> Result<(Group, Vec<Command>)> {
    let now = Timestamp::now();
    let mut overlay = Overlay::over(base, below);
    let mut out = GroupOutput::default();
    let Gathered { pieces, last } = gathered;
    let checkpoint = Checkpoint {
        format: STATE_FORMAT,
        position: last.position,
        skip_rows: last.skip_rows,
        snapshot: snapshot.clone(),
        committed_at: now.micros() / 1_000_000,
    };
    if !last.ends_transaction {
        tracing::info!(
            rows = last.skip_rows,
            "a transaction larger than --max-transaction-rows: applying it in several steps, \
             in order"
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
        let at = &piece.position;
        let n = apply_content(piece.content, &mut overlay, keys, now, &mut out, at)?;
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
        budget,
    };
    Ok((group, out.commands))
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
