//! The binlog stream as committed transactions of the four tables.
//!
//! Events are read with `mysql_async`'s binlog stream. Row events of the four
//! tables of the configured database are decoded by column name (from the
//! table map's metadata with `binlog_row_metadata=FULL`, else from
//! `information_schema`, refreshed after DDL) and buffered until their
//! transaction commits (XID, or `COMMIT`). Everything else (other databases,
//! other tables, DDL, statement events) is skipped, but the position moves
//! past it.
//!
//! A transaction larger than `max_rows` comes out in several pieces; each
//! leading piece says where to resume to continue right after it (the
//! transaction's start, skipping the rows already handed out).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures_util::StreamExt;
use mysql_async::binlog::events::{Event, EventData, OptionalMetadataField, RowsEventData};
use mysql_async::binlog::BinlogChecksumAlg;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest};

use super::image::Layout;
use super::{MySqlSource, TableRows};
use crate::error::{mysql_code, Error, Result};
use crate::model::RowChange;
use crate::position::BinlogPosition;

/// How often the server sends a heartbeat on an idle stream.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// No event (not even a heartbeat) for this long: the connection is dead.
const SILENCE_LIMIT: Duration = Duration::from_secs(10);
/// MariaDB's GTID event, which also opens a transaction.
const MARIADB_GTID_EVENT: u8 = 162;
/// Flag of a MariaDB GTID event: a single statement (DDL), no BEGIN/COMMIT.
const MARIADB_FL_STANDALONE: u8 = 1;
/// Length of an event's CRC32 checksum.
const CHECKSUM_LEN: usize = 4;

/// A piece of the stream: a committed transaction (or a part of a large
/// one), or only progress past events that changed nothing of ours.
#[derive(Debug)]
pub struct Piece {
    pub changes: Vec<RowChange>,
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

/// A transaction being read.
struct OpenTx {
    start: BinlogPosition,
    changes: Vec<RowChange>,
    /// Row changes of this transaction seen so far (handed out or skipped).
    seen: u64,
    /// A single statement (DDL) that ends at its query event, with no
    /// BEGIN/COMMIT around it.
    standalone: bool,
    gtid: Option<(u32, String)>,
}

/// Reads pieces from the binlog, starting at a checkpoint.
pub struct BinlogReader {
    stream: BinlogStream,
    source: MySqlSource,
    file: String,
    next_offset: u64,
    /// MariaDB GTID position per domain, as `domain-server-seq`.
    gtids: BTreeMap<u32, String>,
    tx: Option<OpenTx>,
    /// Row changes to drop from the first transaction (resuming inside it).
    skip_first: u64,
    max_rows: usize,
    columns: ColumnNames,
    last_reported: (String, u64),
    /// The server writes CRC32 checksums into its binlog events.
    server_checksums: bool,
}

impl BinlogReader {
    /// Registers as a replica with `server_id` and starts reading at
    /// `position`, dropping the first `skip_rows` row changes.
    pub async fn open(
        source: &MySqlSource,
        server_id: u32,
        position: &BinlogPosition,
        skip_rows: u64,
        max_rows: usize,
    ) -> Result<Self> {
        let mut conn = source.connect().await?;
        let checksum: Option<String> = conn
            .query_first("SELECT @@GLOBAL.binlog_checksum")
            .await
            .map_err(|e| Error::mysql("reading binlog_checksum", e))?;
        let heartbeat_ns = HEARTBEAT.as_nanos().to_string();
        conn.query_drop(format!(
            "SET @master_heartbeat_period = {heartbeat_ns}, @mariadb_slave_capability = 4"
        ))
        .await
        .map_err(|e| Error::mysql("preparing the binlog stream", e))?;
        let request = BinlogStreamRequest::new(server_id)
            .with_filename(position.file.as_bytes())
            .with_pos(position.offset);
        let stream = conn
            .get_binlog_stream(request)
            .await
            .map_err(|e| stream_error(e, position))?;
        Ok(BinlogReader {
            stream,
            source: source.clone(),
            file: position.file.clone(),
            next_offset: position.offset,
            gtids: parse_gtids(position.gtid.as_deref()),
            tx: None,
            skip_first: skip_rows,
            max_rows: max_rows.max(1),
            columns: ColumnNames::default(),
            last_reported: (position.file.clone(), position.offset),
            server_checksums: checksum.is_some_and(|c| !c.eq_ignore_ascii_case("NONE")),
        })
    }

    fn position(&self, offset: u64) -> BinlogPosition {
        let gtid = (!self.gtids.is_empty())
            .then(|| self.gtids.values().cloned().collect::<Vec<_>>().join(","));
        BinlogPosition::new(self.file.clone(), offset).with_gtid(gtid)
    }

    /// The next piece. Errors are final for this reader; the caller opens a
    /// new one from its checkpoint.
    pub async fn next(&mut self) -> Result<Piece> {
        loop {
            let event = match tokio::time::timeout(SILENCE_LIMIT, self.stream.next()).await {
                Err(_) => {
                    return Err(Error::SourceLost(format!(
                        "no event or heartbeat for {}s",
                        SILENCE_LIMIT.as_secs()
                    )))
                }
                Ok(None) => return Err(Error::SourceLost("the binlog stream ended".into())),
                Ok(Some(Err(e))) => return Err(stream_error(e, &self.position(self.next_offset))),
                Ok(Some(Ok(event))) => event,
            };
            if let Some(piece) = self.handle(&event).await? {
                return Ok(piece);
            }
        }
    }

    async fn handle(&mut self, event: &Event) -> Result<Option<Piece>> {
        let header = event.header();
        let end = u64::from(header.log_pos());
        let start = self.position(self.next_offset);
        let mut committed = false;
        if header.event_type_raw() == MARIADB_GTID_EVENT {
            let data = event.data();
            if data.len() >= 13 {
                let seq = u64::from_le_bytes(data[0..8].try_into().unwrap_or_default());
                let domain = u32::from_le_bytes(data[8..12].try_into().unwrap_or_default());
                let gtid = format!("{domain}-{}-{seq}", header.server_id());
                self.begin(start, data[12] & MARIADB_FL_STANDALONE != 0);
                if let Some(tx) = self.tx.as_mut() {
                    tx.gtid = Some((domain, gtid));
                }
            }
        } else {
            let data = event.read_data().map_err(|e| {
                Error::decode("binlog", format!("unreadable event at {start}: {e}"))
            })?;
            match data {
                Some(EventData::RotateEvent(rotate)) => {
                    let mut name = rotate.name_raw();
                    // The server's first (artificial) rotate comes before the
                    // format description that announces checksums, so its
                    // checksum was read as part of the name.
                    let stripped = matches!(
                        event.footer().get_checksum_alg(),
                        Ok(Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32))
                    );
                    if self.server_checksums && !stripped && name.len() > CHECKSUM_LEN {
                        name = &name[..name.len() - CHECKSUM_LEN];
                    }
                    self.file = String::from_utf8_lossy(name).into_owned();
                    self.next_offset = rotate.position();
                    return Ok(self.progress(0));
                }
                Some(EventData::QueryEvent(query)) => {
                    let text = query.query();
                    let verb = text.trim().to_ascii_uppercase();
                    if verb == "BEGIN" {
                        self.begin(start, false);
                        if let Some(tx) = self.tx.as_mut() {
                            tx.standalone = false;
                        }
                    } else if verb == "COMMIT" {
                        committed = true;
                    } else if verb == "ROLLBACK" {
                        self.tx = None;
                    } else if self.tx.as_ref().is_none_or(|tx| tx.standalone) {
                        // DDL or another standalone statement: our tables may
                        // have changed shape.
                        self.columns.clear();
                        committed = self.tx.is_some();
                    }
                }
                // MySQL: a GTID event opens what is either a transaction
                // (BEGIN follows) or a single statement.
                Some(EventData::GtidEvent(_) | EventData::AnonymousGtidEvent(_)) => {
                    self.begin(start, true)
                }
                Some(EventData::XidEvent(_)) => committed = true,
                // A heartbeat's position is the server's, not ours to take.
                Some(EventData::HeartbeatEvent) if self.tx.is_none() => {
                    return Ok(Some(Piece {
                        changes: Vec::new(),
                        position: self.position(self.next_offset),
                        skip_rows: 0,
                        timestamp: 0,
                        ends_transaction: true,
                        heartbeat: true,
                    }));
                }
                Some(EventData::HeartbeatEvent) => return Ok(None),
                Some(EventData::RowsEvent(rows)) => self.rows(&rows, &start).await?,
                _ => {}
            }
        }
        // Offsets only grow within a file (a rotation resets them, above);
        // artificial events carry 0 or an earlier offset.
        if end > self.next_offset {
            self.next_offset = end;
        }
        if committed {
            return Ok(self.commit(header.timestamp()));
        }
        if let Some(tx) = &mut self.tx {
            if tx.changes.len() >= self.max_rows {
                return Ok(Some(Piece {
                    changes: std::mem::take(&mut tx.changes),
                    position: tx.start.clone(),
                    skip_rows: tx.seen,
                    timestamp: header.timestamp(),
                    ends_transaction: false,
                    heartbeat: false,
                }));
            }
            return Ok(None);
        }
        Ok(self.progress(header.timestamp()))
    }

    /// Opens a transaction at `start`, unless one is open. A `standalone`
    /// one is a single statement that ends with its query event.
    fn begin(&mut self, start: BinlogPosition, standalone: bool) {
        if self.tx.is_none() {
            self.tx = Some(OpenTx {
                start,
                changes: Vec::new(),
                seen: 0,
                standalone,
                gtid: None,
            });
        }
    }

    fn commit(&mut self, timestamp: u32) -> Option<Piece> {
        let tx = self.tx.take()?;
        if let Some((domain, gtid)) = tx.gtid {
            self.gtids.insert(domain, gtid);
        }
        self.skip_first = 0;
        self.last_reported = (self.file.clone(), self.next_offset);
        Some(Piece {
            changes: tx.changes,
            position: self.position(self.next_offset),
            skip_rows: 0,
            timestamp,
            ends_transaction: true,
            heartbeat: false,
        })
    }

    /// Progress outside a transaction, when the position moved.
    fn progress(&mut self, timestamp: u32) -> Option<Piece> {
        if self.tx.is_some() || self.last_reported == (self.file.clone(), self.next_offset) {
            return None;
        }
        self.last_reported = (self.file.clone(), self.next_offset);
        Some(Piece {
            changes: Vec::new(),
            position: self.position(self.next_offset),
            skip_rows: 0,
            timestamp,
            ends_transaction: true,
            heartbeat: false,
        })
    }

    async fn rows(&mut self, rows: &RowsEventData<'_>, at: &BinlogPosition) -> Result<()> {
        let Some(tme) = self.stream.get_tme(rows.table_id()) else {
            return Err(Error::decode(
                "binlog",
                format!("rows event without its table map at {at}"),
            ));
        };
        if tme.database_name() != self.source.database() {
            return Ok(());
        }
        let Some(table) = TableRows::from_table(&tme.table_name()) else {
            return Ok(());
        };
        // Column names: from the table map when the server logs them.
        let needs_lookup = !tme
            .iter_optional_meta()
            .any(|f| matches!(f, Ok(OptionalMetadataField::ColumnName(_))));
        if needs_lookup && !self.columns.has(table) {
            let names = self.columns.fetch(&self.source, table).await?;
            self.columns.insert(table, names);
        }
        let tme = self.stream.get_tme(rows.table_id()).expect("checked above");
        let Some(tx) = self.tx.as_mut() else {
            return Ok(());
        };
        let layout =
            Layout::new(table, tme, self.columns.get(table)).map_err(|e| located(e, at))?;
        let skip_first = self.skip_first;
        layout
            .read(rows, |change| {
                tx.seen += 1;
                if tx.seen > skip_first {
                    tx.changes.push(change);
                }
                Ok(())
            })
            .map_err(|e| located(e, at))
    }

    /// Closes the replication connection.
    pub async fn close(self) {
        let _ = self.stream.close().await;
    }
}

/// Column names of the four tables from `information_schema`, for servers
/// that do not log them (`binlog_row_metadata=MINIMAL`).
#[derive(Default)]
struct ColumnNames {
    names: HashMap<&'static str, Vec<String>>,
    warned: bool,
}

impl ColumnNames {
    fn clear(&mut self) {
        self.names.clear();
    }

    fn has(&self, table: TableRows) -> bool {
        self.names.contains_key(table.table())
    }

    fn get(&self, table: TableRows) -> Option<&[String]> {
        self.names.get(table.table()).map(Vec::as_slice)
    }

    fn insert(&mut self, table: TableRows, names: Vec<String>) {
        self.names.insert(table.table(), names);
    }

    async fn fetch(&mut self, source: &MySqlSource, table: TableRows) -> Result<Vec<String>> {
        if !self.warned {
            self.warned = true;
            tracing::warn!(
                "the binlog carries no column names; reading them from information_schema. \
                 Set binlog_row_metadata=FULL on the server so that replaying old events after \
                 a schema change stays exact"
            );
        }
        let mut conn = source.connect().await?;
        let names: Vec<String> = conn
            .exec(
                "SELECT column_name FROM information_schema.columns \
                 WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                (source.database(), table.table()),
            )
            .await
            .map_err(|e| Error::mysql("reading column names", e))?;
        let _ = conn.disconnect().await;
        Ok(names)
    }
}

/// A decoding error, with the position of its event.
fn located(e: Error, at: &BinlogPosition) -> Error {
    match e {
        Error::Decode { table, reason } => {
            Error::decode(table, format!("{reason} (event at {at})"))
        }
        other => other,
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

/// Sorts stream errors into a purged binlog (final) and a lost source (retried).
fn stream_error(e: mysql_async::Error, position: &BinlogPosition) -> Error {
    match e {
        mysql_async::Error::Server(ref s)
            if s.code == mysql_code::MASTER_FATAL_ERROR_READING_BINLOG =>
        {
            Error::BinlogUnavailable {
                file: position.file.clone(),
                message: s.message.clone(),
            }
        }
        mysql_async::Error::Server(ref s)
            if matches!(
                s.code,
                mysql_code::ACCESS_DENIED | mysql_code::SPECIFIC_ACCESS_DENIED
            ) =>
        {
            Error::Prerequisite(format!(
                "the MySQL account lacks a privilege (reading the binlog): {}. \
                 GRANT REPLICATION SLAVE ON *.* to the account (see sql/grants.sql)",
                s.message
            ))
        }
        mysql_async::Error::Server(_) => {
            Error::mysql(format!("reading the binlog at {position}"), e)
        }
        other => Error::SourceLost(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_positions_are_kept_per_domain() {
        let g = parse_gtids(Some("0-1-23,1-2-5"));
        assert_eq!(g[&0], "0-1-23");
        assert_eq!(g[&1], "1-2-5");
        assert!(parse_gtids(None).is_empty());
        assert!(parse_gtids(Some("")).is_empty());
    }
}
