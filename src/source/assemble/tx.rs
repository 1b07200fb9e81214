//! The transaction being read, with its savepoints.

use crate::model::RowChange;
use crate::position::BinlogPosition;

/// A transaction being read.
pub(super) struct OpenTx {
    pub(super) start: BinlogPosition,
    pub(super) changes: Vec<RowChange>,
    /// Row changes of this transaction read so far (handed out, skipped or
    /// buffered), counted as the binlog holds them.
    pub(super) seen: u64,
    /// Of those, the ones handed out in leading pieces, or skipped because
    /// an earlier run had applied them.
    pub(super) handed_out: u64,
    /// A single statement that ends with its query event.
    pub(super) standalone: bool,
    /// Its `BEGIN` (or first row event) was read: another one starts the
    /// next transaction.
    pub(super) begun: bool,
    /// Its events came in a MySQL compressed payload.
    pub(super) payload: bool,
    /// An XA transaction: held whole until `XA PREPARE`, never in parts.
    pub(super) xa: bool,
    pub(super) gtid: Option<(u32, String)>,
    /// Savepoints: name, `seen` and the buffer's length when set.
    pub(super) savepoints: Vec<(String, u64, usize)>,
}

impl OpenTx {
    /// ``ROLLBACK TO `name` ``: drops the row changes logged since the
    /// savepoint, unless some were handed out already.
    pub(super) fn rollback_to(&mut self, name: &str) -> Result<(), String> {
        let Some(at) = self.savepoints.iter().position(|(n, ..)| n == name) else {
            return Err(format!(
                "ROLLBACK TO SAVEPOINT `{name}`, a savepoint the binlog never set"
            ));
        };
        let (_, seen, len) = self.savepoints[at];
        if seen < self.handed_out {
            return Err(format!(
                "ROLLBACK TO SAVEPOINT `{name}` in a transaction already applied in part past \
                 the savepoint (it is larger than --max-transaction-rows)"
            ));
        }
        self.changes.truncate(len);
        self.savepoints.truncate(at + 1);
        Ok(())
    }
}
