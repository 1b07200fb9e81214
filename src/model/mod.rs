//! The Redis model of `docs/redis-model.md`, as pure functions.
//!
//! Rows of the four source tables ([`rows`]) and a read view of the
//! replicator's state become Redis commands ([`Command`]). No I/O happens
//! here: the snapshot, streaming, rebuilds and `verify` all build a session
//! hash with the same code, and it is unit-tested and benchmarked alone.

mod apply;
mod change;
mod coalesce;
mod command;
mod keys;
pub mod pending;
mod rows;
mod session;
mod table;
mod timestamp;
pub mod view;

pub use apply::{apply, apply_content, finish_group, prefetch, GroupOutput};
pub use change::{Content, RowChange, SourceRow, Xid};
pub use coalesce::coalesce;
pub use command::Command;
pub use keys::Keys;
pub use pending::{Pending, Write};
pub use rows::{Attribute, Bytes, Preferences, Session, SessionRef, User};
pub use session::{
    attribute_field, preference_fields, session_fields, session_hash, user_fields, write_session,
    write_user_index, Field,
};
pub use table::Table;
pub use timestamp::Timestamp;
pub use view::{Overlay, StateView};
