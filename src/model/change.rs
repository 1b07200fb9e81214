//! Row changes of the four tables, and the pieces of the stream that
//! carry them.

use serde::{Deserialize, Serialize};

use super::{Attribute, Preferences, Session, Table, User};

/// One row of one of the four tables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceRow {
    User(User),
    Preferences(Preferences),
    Session(Session),
    Attribute(Attribute),
}

/// One row change. Updates carry both images (`binlog_row_image=FULL`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RowChange {
    Insert(SourceRow),
    Update {
        before: SourceRow,
        after: SourceRow,
    },
    /// A delete, with the cascade of the tables' `ON DELETE CASCADE` keys
    /// (which MySQL applies without logging it).
    Delete(SourceRow),
    /// A delete that did not cascade: written with `FOREIGN_KEY_CHECKS=0`
    /// (the row event's flags say so), or a row emptied by `TRUNCATE`.
    Remove(SourceRow),
}

/// An XA transaction's id, in the server's own form
/// `X'<gtrid hex>',X'<bqual hex>',<formatID>` (hex in lower case).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Xid(pub String);

impl Xid {
    /// From the parts an `XA_PREPARE` event carries.
    pub fn from_parts(format_id: i64, gtrid: &[u8], bqual: &[u8]) -> Xid {
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        Xid(format!("X'{}',X'{}',{format_id}", hex(gtrid), hex(bqual)))
    }
}

impl std::fmt::Display for Xid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a piece of the stream asks the replicator to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// Row changes of a committed transaction, or of a part of one (none:
    /// progress past events that changed nothing of ours).
    Rows(Vec<RowChange>),
    /// Empty one of the four tables, as `TRUNCATE` does (no cascade).
    Truncate(Table),
    /// An XA transaction was prepared: hold its row changes until its
    /// outcome is logged.
    XaPrepare { xid: Xid, changes: Vec<RowChange> },
    /// Apply the held row changes of this XA transaction.
    XaCommit(Xid),
    /// Drop the held row changes of this XA transaction.
    XaRollback(Xid),
}

impl Content {
    /// The row changes this piece carries.
    pub fn rows(&self) -> usize {
        match self {
            Content::Rows(changes) | Content::XaPrepare { changes, .. } => changes.len(),
            _ => 0,
        }
    }

    /// Whether it only moves the position on.
    pub fn is_progress(&self) -> bool {
        matches!(self, Content::Rows(changes) if changes.is_empty())
    }
}

impl SourceRow {
    /// Whether `other` is the same row of the same table: the same primary
    /// key (an update may change it).
    pub fn same_row(&self, other: &SourceRow) -> bool {
        match (self, other) {
            (SourceRow::User(a), SourceRow::User(b)) => a.user_id == b.user_id,
            (SourceRow::Preferences(a), SourceRow::Preferences(b)) => a.user_id == b.user_id,
            (SourceRow::Session(a), SourceRow::Session(b)) => a.session_id == b.session_id,
            (SourceRow::Attribute(a), SourceRow::Attribute(b)) => {
                a.session_id == b.session_id && a.key == b.key
            }
            _ => false,
        }
    }
}
