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
