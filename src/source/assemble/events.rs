//! What goes into the assembler (events) and what comes out (pieces, or a
//! stop).

use crate::model::{Content, RowChange, Table, Xid};
use crate::position::{BinlogFile, BinlogPosition};

/// A binlog event, as far as the assembler needs to know it.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceEvent {
    /// Opens a transaction. `gtid`: MariaDB's `(domain, "domain-server-seq")`;
    /// `standalone`: a single statement follows, with no `BEGIN`/`COMMIT`
    /// (MariaDB's flag; MySQL's GTID events always say so, and a `BEGIN`
    /// that follows says otherwise); `xa`: an XA transaction (MariaDB logs
    /// its `XA START` in the GTID event).
    Gtid {
        gtid: Option<(u32, String)>,
        standalone: bool,
        xa: bool,
    },
    /// A statement logged as text, with its default database.
    Query {
        schema: String,
        text: String,
    },
    /// Row changes of the four tables (the reader drops other tables').
    Rows(Vec<RowChange>),
    /// The commit of a transaction.
    Xid,
    /// `XA PREPARE` of the transaction being read (`one_phase`: MySQL's
    /// `XA COMMIT ... ONE PHASE`, which commits it).
    XaPrepare {
        xid: Xid,
        one_phase: bool,
    },
    /// The next events come from `file`, at `offset`.
    Rotate {
        file: BinlogFile,
        offset: u64,
    },
    FormatDescription,
    /// The server has nothing more to send for now.
    Heartbeat,
    /// MySQL's compressed transaction (`binlog_transaction_compression`):
    /// the stream hands out the events inside it next, the commit among
    /// them. Should they not arrive (the payload did not decompress), the
    /// transaction never commits here, and the stream stops.
    Payload,
    /// An event that changes none of the four tables: a table map, rows of
    /// other tables, an annotation, MariaDB's binlog checkpoints...
    Skip,
    /// An event the reader cannot read that may change the four tables.
    Unsupported(String),
}

/// A piece of the stream.
#[derive(Debug)]
pub struct Piece {
    pub content: Content,
    /// Where to resume to continue right after this piece...
    pub position: BinlogPosition,
    /// ...skipping this many row changes of the transaction starting there.
    pub skip_rows: u64,
    /// The commit's timestamp, Unix seconds (0 for progress only).
    pub timestamp: u32,
    /// False for the leading parts of a transaction larger than `max_rows`.
    pub ends_transaction: bool,
    /// The server's heartbeat: it has nothing more to send, we are caught up.
    pub heartbeat: bool,
}

/// An event that cannot be applied exactly: the stream stops before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stop {
    /// Where the event starts.
    pub position: BinlogPosition,
    pub table: Option<Table>,
    pub what: String,
}

/// One event and where the server says it ends.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub event: SourceEvent,
    /// The offset of the next event (the header's `log_pos`; 0 or an
    /// earlier offset for artificial events).
    pub end: u64,
    /// The header's timestamp, Unix seconds.
    pub timestamp: u32,
}
