//! What a sequence of binlog events means, decided with no I/O: events in,
//! committed pieces (or a stop) out.
//!
//! The reader ([`super::binlog`]) turns the server's events into the small
//! [`SourceEvent`] enum (rows already decoded, other tables' rows already
//! dropped) and feeds them here, one at a time. The assembler keeps the
//! transaction being read and yields a [`Piece`] when something is
//! committed:
//!
//! - an ordinary transaction (GTID or `BEGIN` ... XID or `COMMIT`) yields its
//!   row changes; `ROLLBACK` drops them; ``ROLLBACK TO `sp` `` drops those
//!   logged since the savepoint (MariaDB logs them when the transaction also
//!   wrote a non-transactional table);
//! - a transaction larger than `max_rows` comes out in several pieces; each
//!   leading piece says where to resume to continue right after it (the
//!   transaction's start, skipping the row changes already handed out);
//! - an XA transaction yields its rows at `XA PREPARE` as rows to hold, and
//!   then `XA COMMIT` or `XA ROLLBACK` of its id, in a later piece of its own;
//!   `XA COMMIT ... ONE PHASE` commits at once;
//! - `TRUNCATE` of a source table yields the table to empty;
//! - everything else moves the position on: other tables, other databases,
//!   DDL the model follows (it also marks the column names stale).
//!
//! What cannot be applied exactly (statement-format DML on a source table,
//! DDL that removes or renames what the model reads, an event the reader
//! cannot read that may carry rows of ours) is a [`Stop`] at the event's
//! position: nothing of the transaction it is in has been handed out, so
//! the checkpoint stays before it.

use std::collections::BTreeMap;

use super::statement::{classify, Statement};
use crate::model::Content;
use crate::position::{BinlogFile, BinlogPosition};
use tx::OpenTx;

pub use events::{Event, Piece, SourceEvent, Stop};

/// The state machine. Feed it events in order with [`Assembler::feed`].
pub struct Assembler {
    database: String,
    file: BinlogFile,
    next_offset: u64,
    /// MariaDB GTID position per domain, as `domain-server-seq`.
    gtids: BTreeMap<u32, String>,
    tx: Option<OpenTx>,
    /// Row changes to drop from the first transaction (resuming inside it).
    skip_first: u64,
    max_rows: usize,
    last_reported: (BinlogFile, u64),
    /// A statement changed a source table's shape since the last call of
    /// [`Assembler::take_reshaped`].
    reshaped: bool,
}

impl Assembler {
    /// Starts at `position` (a transaction boundary, or the start of a
    /// transaction of which `skip_rows` row changes were applied already),
    /// for the tables of `database`.
    pub fn new(database: &str, position: &BinlogPosition, skip_rows: u64, max_rows: usize) -> Self {
        Assembler {
            database: database.to_string(),
            file: position.file.clone(),
            next_offset: position.offset,
            gtids: parse_gtids(position.gtid.as_deref()),
            tx: None,
            skip_first: skip_rows,
            max_rows: max_rows.max(1),
            last_reported: (position.file.clone(), position.offset),
            reshaped: false,
        }
    }

    /// The position of the next event to read.
    pub fn position(&self) -> BinlogPosition {
        self.at(self.next_offset)
    }

    fn at(&self, offset: u64) -> BinlogPosition {
        let gtid = (!self.gtids.is_empty())
            .then(|| self.gtids.values().cloned().collect::<Vec<_>>().join(","));
        BinlogPosition::new(self.file.clone(), offset).with_gtid(gtid)
    }

    /// Whether a statement changed a source table's shape since the last
    /// call (the column names the reader looked up are then stale).
    pub fn take_reshaped(&mut self) -> bool {
        std::mem::take(&mut self.reshaped)
    }

    /// Takes the next event: a piece when something is committed or the
    /// position moved outside a transaction, a [`Stop`] when the event
    /// cannot be applied exactly.
    pub fn feed(&mut self, event: Event) -> Result<Option<Piece>, Stop> {
        let Event {
            event,
            end,
            timestamp,
        } = event;
        let start = self.position();
        let stop = |table, what: String| Stop {
            position: start.clone(),
            table,
            what,
        };
        let mut committed: Option<Option<Content>> = None;
        match event {
            SourceEvent::Gtid {
                gtid,
                standalone,
                xa,
            } => {
                self.abandon_incomplete(&start)?;
                let tx = self.begin(start.clone(), standalone);
                tx.gtid = gtid;
                tx.xa |= xa;
            }
            SourceEvent::Query { schema, text } => match classify(&text, &schema, &self.database) {
                Statement::Begin => {
                    if self.tx.as_ref().is_some_and(|tx| tx.begun) {
                        self.abandon_incomplete(&start)?;
                    }
                    let tx = self.begin(start.clone(), false);
                    tx.standalone = false;
                    tx.begun = true;
                }
                Statement::Commit => committed = Some(None),
                Statement::Rollback => {
                    if let Some(tx) = &mut self.tx {
                        tx.changes.clear();
                        if tx.handed_out > 0 {
                            return Err(stop(
                                None,
                                "ROLLBACK of a transaction already applied in part (it is larger \
                                     than --max-transaction-rows)"
                                    .into(),
                            ));
                        }
                    }
                    committed = Some(None);
                }
                Statement::Savepoint(name) => {
                    if let Some(tx) = &mut self.tx {
                        tx.savepoints.retain(|(n, ..)| *n != name);
                        tx.savepoints.push((name, tx.seen, tx.changes.len()));
                    }
                }
                Statement::ReleaseSavepoint(name) => {
                    if let Some(tx) = &mut self.tx {
                        if let Some(at) = tx.savepoints.iter().position(|(n, ..)| *n == name) {
                            tx.savepoints.truncate(at);
                        }
                    }
                }
                Statement::RollbackToSavepoint(name) => {
                    if let Some(tx) = &mut self.tx {
                        tx.rollback_to(&name).map_err(|what| stop(None, what))?;
                    }
                }
                Statement::XaFrame => {
                    let tx = self.begin(start.clone(), false);
                    tx.standalone = false;
                    tx.xa = true;
                }
                Statement::XaCommit(xid) => committed = Some(Some(Content::XaCommit(xid))),
                Statement::XaRollback(xid) => committed = Some(Some(Content::XaRollback(xid))),
                Statement::Truncate(table) => {
                    if self.tx.as_ref().is_some_and(|tx| !tx.changes.is_empty()) {
                        return Err(stop(
                            Some(table),
                            "TRUNCATE inside a transaction that changed rows".into(),
                        ));
                    }
                    committed = Some(Some(Content::Truncate(table)));
                }
                Statement::Reshape => {
                    self.reshaped = true;
                    committed = self.ends_standalone();
                }
                Statement::Unappliable { table, what } => return Err(stop(Some(table), what)),
                Statement::Unrelated => committed = self.ends_standalone(),
            },
            SourceEvent::Rows(changes) => {
                let skip = self.skip_first;
                let tx = self.begin(start.clone(), false);
                tx.standalone = false;
                tx.begun = true;
                // Those of the first `skip` row changes of the transaction
                // that this event holds were applied by an earlier run.
                let skipped = usize::try_from(skip.saturating_sub(tx.seen)).unwrap_or(usize::MAX);
                tx.seen += changes.len() as u64;
                if skipped == 0 && tx.changes.is_empty() {
                    tx.changes = changes;
                } else {
                    tx.changes.extend(changes.into_iter().skip(skipped));
                }
            }
            SourceEvent::Xid => committed = Some(None),
            SourceEvent::XaPrepare { xid, one_phase } => {
                committed = Some(match one_phase {
                    true => None,
                    false => {
                        let changes = self
                            .tx
                            .as_mut()
                            .map(|tx| std::mem::take(&mut tx.changes))
                            .unwrap_or_default();
                        Some(Content::XaPrepare { xid, changes })
                    }
                });
            }
            SourceEvent::Rotate { file, offset } => {
                // No transaction spans two files.
                self.abandon_incomplete(&start)?;
                self.file = file;
                self.next_offset = offset;
                return Ok(self.progress(0));
            }
            SourceEvent::Heartbeat => {
                // A heartbeat's position is the server's, not ours to take.
                if self.tx.is_some() {
                    return Ok(None);
                }
                return Ok(Some(Piece {
                    content: Content::Rows(Vec::new()),
                    position: self.position(),
                    skip_rows: 0,
                    timestamp: 0,
                    ends_transaction: true,
                    heartbeat: true,
                }));
            }
            SourceEvent::Payload => self.begin(start.clone(), false).payload = true,
            SourceEvent::FormatDescription | SourceEvent::Skip => {}
            SourceEvent::Unsupported(what) => return Err(stop(None, what)),
        }
        // Offsets only grow within a file (a rotation resets them, above);
        // artificial events carry 0 or an earlier offset.
        if end > self.next_offset {
            self.next_offset = end;
        }
        if let Some(content) = committed {
            return Ok(Some(self.commit(timestamp, content)));
        }
        if let Some(tx) = &mut self.tx {
            if !tx.xa && tx.changes.len() >= self.max_rows {
                tx.handed_out = tx.seen;
                return Ok(Some(Piece {
                    content: Content::Rows(std::mem::take(&mut tx.changes)),
                    position: tx.start.clone(),
                    skip_rows: tx.seen,
                    timestamp,
                    ends_transaction: false,
                    heartbeat: false,
                }));
            }
            return Ok(None);
        }
        Ok(self.progress(timestamp))
    }

    /// The transaction being read, opened at `start` if none is.
    fn begin(&mut self, start: BinlogPosition, standalone: bool) -> &mut OpenTx {
        let skip = self.skip_first;
        self.tx.get_or_insert_with(|| OpenTx {
            start,
            changes: Vec::new(),
            seen: 0,
            handed_out: skip,
            standalone,
            begun: false,
            payload: false,
            xa: false,
            gtid: None,
            savepoints: Vec::new(),
        })
    }

    /// A transaction that starts while one is open: the open one never
    /// committed (the server stopped while writing it, at the end of a
    /// file). Replicas roll it back, and so does the assembler, unless some
    /// of it was handed out already.
    fn abandon_incomplete(&mut self, at: &BinlogPosition) -> Result<(), Stop> {
        let Some(tx) = self.tx.take() else {
            return Ok(());
        };
        if tx.payload {
            return Err(Stop {
                position: at.clone(),
                table: None,
                what: format!(
                    "the compressed transaction payload of the transaction started at {} gave no \
                     commit (it may not have decompressed), so its row changes are unknown",
                    tx.start
                ),
            });
        }
        if tx.handed_out > 0 {
            return Err(Stop {
                position: at.clone(),
                table: None,
                what: format!(
                    "a transaction started at {} never committed, and part of it (larger than \
                     --max-transaction-rows) was applied already",
                    tx.start
                ),
            });
        }
        if !tx.changes.is_empty() {
            tracing::warn!(
                start = %tx.start,
                rows = tx.changes.len(),
                "a transaction that never committed (the server stopped while writing it): its row \
                 changes are dropped, as a replica does"
            );
        }
        Ok(())
    }

    /// A statement that commits by itself when it is the transaction's
    /// only statement.
    fn ends_standalone(&self) -> Option<Option<Content>> {
        self.tx
            .as_ref()
            .is_some_and(|tx| tx.standalone)
            .then_some(None)
    }

    /// Ends the transaction (if one is open): `content`, or its rows.
    fn commit(&mut self, timestamp: u32, content: Option<Content>) -> Piece {
        let tx = self.tx.take();
        let changes = match tx {
            Some(tx) => {
                if let Some((domain, gtid)) = tx.gtid {
                    self.gtids.insert(domain, gtid);
                }
                tx.changes
            }
            None => Vec::new(),
        };
        self.skip_first = 0;
        self.last_reported = (self.file.clone(), self.next_offset);
        Piece {
            content: content.unwrap_or(Content::Rows(changes)),
            position: self.position(),
            skip_rows: 0,
            timestamp,
            ends_transaction: true,
            heartbeat: false,
        }
    }

    /// Progress outside a transaction, when the position moved.
    fn progress(&mut self, timestamp: u32) -> Option<Piece> {
        if self.tx.is_some() || self.last_reported == (self.file.clone(), self.next_offset) {
            return None;
        }
        self.last_reported = (self.file.clone(), self.next_offset);
        Some(Piece {
            content: Content::Rows(Vec::new()),
            position: self.position(),
            skip_rows: 0,
            timestamp,
            ends_transaction: true,
            heartbeat: false,
        })
    }
}

fn parse_gtids(gtid: Option<&str>) -> BTreeMap<u32, String> {
    gtid.unwrap_or_default()
        .split(',')
        .filter_map(|g| {
            let g = g.trim();
            let domain = g.split('-').next()?.parse().ok()?;
            Some((domain, g.to_string()))
        })
        .collect()
}

mod events;
mod tx;

#[cfg(test)]
mod tests;
