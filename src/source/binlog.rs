//! The binlog stream as committed pieces of the four tables: the I/O half.
//!
//! Events are read with `mysql_async`'s binlog stream and turned into the
//! assembler's small [`SourceEvent`] enum: row events of the four tables of
//! the configured database are decoded by column name (from the table
//! map's metadata with `binlog_row_metadata=FULL`, else from
//! `information_schema`, read again after DDL), other tables' rows become
//! [`SourceEvent::Skip`], and MariaDB's own events are read from their
//! bytes ([`super::wire`]). What the sequence means is decided by the pure
//! [`Assembler`].

use std::time::Duration;

use futures_util::StreamExt;
use mysql_async::binlog::events::{Event, EventData, OptionalMetadataField, RowsEventData};
use mysql_async::binlog::RowsEventFlags;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest};

use super::assemble::{self, Assembler, SourceEvent, Stop};
use super::columns::ColumnNames;
use super::image::Layout;
use super::wire;
use super::{MySqlSource, Table};
use crate::error::{mysql_code, Error, Result};
use crate::model::RowChange;
use crate::position::BinlogPosition;

pub use super::assemble::Piece;

/// How often the server sends a heartbeat on an idle stream.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// No event (not even a heartbeat) for this long: the connection is dead.
const SILENCE_LIMIT: Duration = Duration::from_secs(10);

/// Reads pieces from the binlog, starting at a checkpoint.
pub struct BinlogReader {
    stream: BinlogStream,
    source: MySqlSource,
    assembler: Assembler,
    columns: ColumnNames,
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
        let heartbeat_ns = HEARTBEAT.as_nanos().to_string();
        conn.query_drop(format!(
            "SET @master_heartbeat_period = {heartbeat_ns}, @mariadb_slave_capability = 4"
        ))
        .await
        .map_err(|e| Error::mysql("preparing the binlog stream", e))?;
        let request = BinlogStreamRequest::new(server_id)
            .with_filename(position.file.as_str().as_bytes())
            .with_pos(position.offset);
        let stream = conn
            .get_binlog_stream(request)
            .await
            .map_err(|e| stream_error(e, position))?;
        Ok(BinlogReader {
            stream,
            source: source.clone(),
            assembler: Assembler::new(source.database(), position, skip_rows, max_rows),
            columns: ColumnNames::default(),
        })
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
                Ok(Some(Err(e))) => return Err(stream_error(e, &self.assembler.position())),
                Ok(Some(Ok(event))) => event,
            };
            let header = event.header();
            let source_event = self.translate(&event).await?;
            let fed = self.assembler.feed(assemble::Event {
                event: source_event,
                end: u64::from(header.log_pos()),
                timestamp: header.timestamp(),
            });
            if self.assembler.take_reshaped() {
                // A source table changed shape: its column names are stale.
                self.columns.clear();
            }
            match fed {
                Ok(Some(piece)) => return Ok(piece),
                Ok(None) => {}
                Err(stop) => return Err(unappliable(stop)),
            }
        }
    }

    /// What the assembler needs to know of an event.
    async fn translate(&mut self, event: &Event) -> Result<SourceEvent> {
        let header = event.header();
        let kind = header.event_type_raw();
        let at = || self.assembler.position();
        if kind == wire::MARIADB_GTID_EVENT {
            let g = wire::mariadb_gtid(event.data())
                .ok_or_else(|| unreadable(&at(), "a MariaDB GTID event too short to read"))?;
            return Ok(SourceEvent::Gtid {
                gtid: Some((
                    g.domain,
                    format!("{}-{}-{}", g.domain, header.server_id(), g.seq),
                )),
                standalone: g.standalone,
                xa: g.xa,
            });
        }
        if wire::MARIADB_BOOKKEEPING.contains(&kind) {
            return Ok(SourceEvent::Skip);
        }
        if kind == wire::MYSQL_HEARTBEAT_V2 {
            return Ok(SourceEvent::Heartbeat);
        }
        if kind == wire::MARIADB_QUERY_COMPRESSED {
            return Ok(match wire::compressed_query(event.data()) {
                Some((schema, text)) => SourceEvent::Query { schema, text },
                None => SourceEvent::Unsupported(
                    "a compressed query event that does not uncompress".into(),
                ),
            });
        }
        if wire::MARIADB_ROWS_COMPRESSED.contains(&kind) {
            return self.compressed_rows(event, kind).await;
        }
        let data = event
            .read_data()
            .map_err(|e| unreadable(&at(), &format!("an unreadable event of type {kind}: {e}")))?;
        Ok(match data {
            Some(EventData::RotateEvent(rotate)) => {
                let mut body = event.data().to_vec();
                // Put back the checksum the stream's reader took off, if any.
                if let Some(checksum) = event.checksum() {
                    body.extend(checksum);
                }
                let raw = wire::header_bytes(
                    header.timestamp(),
                    kind,
                    header.server_id(),
                    header.event_size(),
                    header.log_pos(),
                    header.flags_raw(),
                );
                let name = wire::rotate_name(&raw, &body).unwrap_or(rotate.name_raw());
                let file = String::from_utf8_lossy(name).parse().map_err(|e| {
                    unreadable(
                        &at(),
                        &format!("a rotate event that names no binlog file: {e}"),
                    )
                })?;
                SourceEvent::Rotate {
                    file,
                    offset: rotate.position(),
                }
            }
            Some(EventData::QueryEvent(query)) => SourceEvent::Query {
                schema: query.schema().into_owned(),
                text: query.query().into_owned(),
            },
            // A LOAD DATA logged as a statement: the file's blocks, then
            // the statement, which names the table.
            Some(EventData::ExecuteLoadQueryEvent(load)) => SourceEvent::Query {
                schema: load.schema().into_owned(),
                text: load.query().into_owned(),
            },
            Some(EventData::BeginLoadQueryEvent(_) | EventData::AppendBlockEvent(_)) => {
                SourceEvent::Skip
            }
            Some(EventData::DeleteFileEvent(_)) => SourceEvent::Skip,
            // MySQL: a GTID event opens what is either a transaction (BEGIN
            // follows) or a single statement.
            Some(EventData::GtidEvent(_) | EventData::AnonymousGtidEvent(_)) => SourceEvent::Gtid {
                gtid: None,
                standalone: true,
                xa: false,
            },
            Some(EventData::XidEvent(_)) => SourceEvent::Xid,
            Some(EventData::XaPrepareLogEvent(raw)) => match wire::xa_prepare(&raw) {
                Some((xid, one_phase)) => SourceEvent::XaPrepare { xid, one_phase },
                None => SourceEvent::Unsupported("an XA PREPARE event too short to read".into()),
            },
            Some(EventData::HeartbeatEvent) => SourceEvent::Heartbeat,
            Some(EventData::FormatDescriptionEvent(_)) => SourceEvent::FormatDescription,
            Some(EventData::RowsEvent(rows)) => self.rows(&rows, &at()).await?,
            // MySQL's compressed transaction: the stream hands out the
            // events inside it next.
            Some(EventData::TransactionPayloadEvent(_)) => SourceEvent::Payload,
            Some(
                EventData::TableMapEvent(_)
                | EventData::RowsQueryEvent(_)
                | EventData::PreviousGtidsEvent(_)
                | EventData::IntvarEvent(_)
                | EventData::RandEvent(_)
                | EventData::UserVarEvent(_)
                | EventData::StopEvent
                | EventData::IgnorableEvent(_)
                | EventData::TransactionContextEvent(_)
                | EventData::ViewChangeEvent(_),
            ) => SourceEvent::Skip,
            Some(EventData::IncidentEvent(incident)) => SourceEvent::Unsupported(format!(
                "an incident event: the server says its binlog may lack changes ({:?})",
                incident.message()
            )),
            Some(other) => SourceEvent::Unsupported(format!(
                "a binlog event the replicator cannot read ({})",
                event_name(&other)
            )),
            None if header.flags_raw() & wire::LOG_EVENT_IGNORABLE_F != 0 => SourceEvent::Skip,
            None => SourceEvent::Unsupported(format!("a binlog event of unknown type {kind}")),
        })
    }

    /// MariaDB's compressed rows event (`log_bin_compress=ON`), read as
    /// the rows event it stands for.
    async fn compressed_rows(&mut self, event: &Event, kind: u8) -> Result<SourceEvent> {
        let at = self.assembler.position();
        let Some((plain, body)) = wire::uncompressed_rows(kind, event.data()) else {
            return Ok(SourceEvent::Unsupported(format!(
                "a compressed rows event (type {kind}) that does not uncompress"
            )));
        };
        let header = event.header();
        // The checksum goes where the stream's reader expects one; its
        // value is not checked there.
        let checksum = if event.checksum().is_some() { 4 } else { 0 };
        let size = u32::try_from(19 + body.len() + checksum).unwrap_or(u32::MAX);
        let mut raw = wire::header_bytes(
            header.timestamp(),
            plain,
            header.server_id(),
            size,
            header.log_pos(),
            header.flags_raw(),
        )
        .to_vec();
        raw.extend_from_slice(&body);
        raw.resize(raw.len() + checksum, 0);
        let plain_event = Event::read(event.fde(), &raw[..])
            .map_err(|e| unreadable(&at, &format!("an uncompressed rows event: {e}")))?;
        match plain_event.read_data() {
            Ok(Some(EventData::RowsEvent(rows))) => self.rows(&rows, &at).await,
            _ => Err(unreadable(
                &at,
                "an uncompressed rows event that does not read",
            )),
        }
    }

    /// The row changes of a rows event of the four tables, or
    /// [`SourceEvent::Skip`] for another table's. A delete written with
    /// `FOREIGN_KEY_CHECKS=0` did not cascade: it becomes a
    /// [`RowChange::Remove`].
    async fn rows(&mut self, rows: &RowsEventData<'_>, at: &BinlogPosition) -> Result<SourceEvent> {
        let Some(tme) = self.stream.get_tme(rows.table_id()) else {
            return Err(unreadable(at, "a rows event without its table map"));
        };
        if tme.database_name() != self.source.database() {
            return Ok(SourceEvent::Skip);
        }
        let Some(table) = Table::from_name(&tme.table_name()) else {
            return Ok(SourceEvent::Skip);
        };
        // Column names: from the table map when the server logs them.
        let needs_lookup = !tme
            .iter_optional_meta()
            .any(|f| matches!(f, Ok(OptionalMetadataField::ColumnName(_))));
        if needs_lookup && !self.columns.has(table) {
            let names = self.columns.fetch(&self.source, table).await?;
            self.columns.insert(table, names);
        }
        let Some(tme) = self.stream.get_tme(rows.table_id()) else {
            return Err(unreadable(at, "a rows event without its table map"));
        };
        let cascade = !rows.flags().contains(RowsEventFlags::NO_FOREIGN_KEY_CHECKS);
        let layout = Layout::new(table, tme, self.columns.get(table))
            .map_err(|e| row_error(e, table, at))?;
        let mut changes = Vec::new();
        layout
            .read(rows, |change| {
                changes.push(match change {
                    RowChange::Delete(row) if !cascade => RowChange::Remove(row),
                    other => other,
                });
                Ok(())
            })
            .map_err(|e| row_error(e, table, at))?;
        Ok(SourceEvent::Rows(changes))
    }

    /// Closes the replication connection.
    pub async fn close(self) {
        let _ = self.stream.close().await;
    }
}

/// The name of an event kind, for messages.
fn event_name(data: &EventData<'_>) -> String {
    let debug = format!("{data:?}");
    debug
        .split(['(', ' ', '{'])
        .next()
        .unwrap_or("unknown")
        .to_string()
}

fn unappliable(stop: Stop) -> Error {
    Error::Unappliable {
        position: stop.position,
        table: stop.table.map(Table::name),
        what: stop.what,
    }
}

fn unreadable(at: &BinlogPosition, what: &str) -> Error {
    Error::Unappliable {
        position: at.clone(),
        table: None,
        what: what.to_string(),
    }
}

/// A row image the model cannot read (a column missing, a value of the
/// wrong type): the stream stops at its event.
fn row_error(e: Error, table: Table, at: &BinlogPosition) -> Error {
    match e {
        Error::Decode { reason, .. } => Error::Unappliable {
            position: at.clone(),
            table: Some(table.name()),
            what: reason,
        },
        other => other,
    }
}

/// Sorts stream errors into a purged binlog (final) and a lost source (retried).
fn stream_error(e: mysql_async::Error, position: &BinlogPosition) -> Error {
    match e {
        mysql_async::Error::Server(ref s)
            if s.code == mysql_code::MASTER_FATAL_ERROR_READING_BINLOG =>
        {
            Error::BinlogUnavailable {
                file: position.file.to_string(),
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
