//! Row changes of the four tables, as the binlog gives them.

use super::{Attribute, Preferences, Session, User};

/// One row of one of the four tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceRow {
    User(User),
    Preferences(Preferences),
    Session(Session),
    Attribute(Attribute),
}

/// One row change. Updates carry both images (`binlog_row_image=FULL`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowChange {
    Insert(SourceRow),
    Update { before: SourceRow, after: SourceRow },
    Delete(SourceRow),
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
