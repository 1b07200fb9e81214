//! The pieces of the stream that are more than row changes: a table
//! emptied by `TRUNCATE`, and XA transactions held from their prepare to
//! their outcome.

use super::{apply, prefetch, GroupOutput};
use crate::error::{Error, Result};
use crate::model::{Content, Keys, Overlay, RowChange, StateView, Timestamp};
use crate::position::BinlogPosition;

/// Applies one piece of the stream (see [`Content`]) and returns how many
/// rows it changed. `at`: the position after the piece, for errors.
pub fn apply_content<V: StateView>(
    content: Content,
    view: &mut Overlay<'_, V>,
    keys: &Keys,
    now: Timestamp,
    out: &mut GroupOutput,
    at: &BinlogPosition,
) -> Result<usize> {
    match content {
        Content::Rows(changes) => {
            let n = changes.len();
            for change in changes {
                apply(change, view, keys, now, out)?;
            }
            Ok(n)
        }
        Content::Truncate(table) => {
            let rows = view.rows_of(table)?;
            let n = rows.len();
            for row in rows {
                apply(RowChange::Remove(row), view, keys, now, out)?;
            }
            Ok(n)
        }
        Content::XaPrepare { xid, changes } => {
            let n = changes.len();
            view.hold_xa(&xid, changes);
            Ok(n)
        }
        Content::XaCommit(xid) => {
            let Some(changes) = view.held_xa(&xid)? else {
                return Err(Error::Unappliable {
                    position: at.clone(),
                    table: None,
                    what: format!(
                        "XA COMMIT {xid} (the event ending there) of a transaction the replicator never \
                         saw prepared: it was prepared before the snapshot, so its rows are unknown"
                    ),
                });
            };
            view.release_xa(&xid);
            let n = changes.len();
            prefetch(&changes, view)?;
            for change in changes {
                apply(change, view, keys, now, out)?;
            }
            Ok(n)
        }
        Content::XaRollback(xid) => {
            // One prepared before the snapshot is not held: nothing to drop.
            let n = view.held_xa(&xid)?.map_or(0, |c| c.len());
            view.release_xa(&xid);
            Ok(n)
        }
    }
}
