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
    /// The session a `user_sessions` or `session_data` row belongs to.
    pub fn session_id(&self) -> Option<&[u8]> {
        match self {
            SourceRow::Session(s) => Some(&s.session_id),
            SourceRow::Attribute(a) => Some(&a.session_id),
            SourceRow::User(_) | SourceRow::Preferences(_) => None,
        }
    }
}

impl RowChange {
    /// The sessions whose row applying this change reads: the one of each
    /// image (see [`SourceRow::session_id`]).
    pub fn session_ids(&self) -> impl Iterator<Item = &[u8]> {
        let (first, second) = match self {
            RowChange::Insert(row) | RowChange::Delete(row) => (row, None),
            RowChange::Update { before, after } => (after, Some(before)),
        };
        first
            .session_id()
            .into_iter()
            .chain(second.and_then(SourceRow::session_id))
    }
}
