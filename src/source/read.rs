//! One consistent read of the four tables, and the binlog position it stands at.

use futures_util::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use tokio::task::JoinHandle;

use super::decode;
use super::{Flavor, MySqlSource};
use crate::error::{Error, Result};
use crate::model::{SourceRow, Table, Xid};
use crate::position::BinlogPosition;

/// The four tables' decoders.
impl Table {
    /// Decodes the values of [`Self::columns`], in that order.
    pub fn decode(self, row: Vec<mysql_async::Value>) -> Result<SourceRow> {
        match self {
            Table::Users => decode::user(row),
            Table::Preferences => decode::preferences(row),
            Table::Sessions => decode::session(row),
            Table::Attributes => decode::attribute(row),
        }
    }
}

/// A transaction with a consistent view of the source, opened at a binlog
/// position ([`Self::position`]).
pub struct ConsistentRead {
    conn: Conn,
    position: BinlogPosition,
    /// MariaDB's GTID of `position`, being looked up on a connection of its
    /// own: `BINLOG_GTID_POS` reads the binlog file up to the offset (a
    /// third of a second at 400 MB into a file), so the tables are read
    /// meanwhile.
    gtid: Option<JoinHandle<Result<Option<String>>>>,
}

impl ConsistentRead {
    /// Opens the consistent view and learns its exact binlog position.
    ///
    /// MariaDB reports the position of a consistent snapshot itself
    /// (`Binlog_snapshot_file/position`), so no lock is taken. MySQL needs a
    /// brief global read lock: the transaction is opened and the position
    /// read while the lock holds, and only then is it released.
    pub async fn begin(source: &MySqlSource, flavor: Flavor) -> Result<Self> {
        let mut conn = source.connect().await?;
        let q = |what: &'static str| move |e| Error::mysql(what, e);
        conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await
            .map_err(q("setting the isolation level"))?;
        let mut gtid = None;
        let position = match flavor {
            Flavor::MariaDb => {
                conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                    .await
                    .map_err(q("opening the consistent snapshot"))?;
                let status: Vec<(String, String)> = conn
                    .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
                    .await
                    .map_err(q("reading the snapshot's binlog position"))?;
                let get = |name: &str| {
                    status
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.clone())
                };
                let file = get("Binlog_snapshot_file").filter(|f| !f.is_empty());
                let offset = get("Binlog_snapshot_position").and_then(|p| p.parse().ok());
                let (Some(file), Some(offset)) = (file, offset) else {
                    return Err(Error::Prerequisite(
                        "the server reports no binlog position for a consistent snapshot: \
                         enable the binary log (log_bin)"
                            .into(),
                    ));
                };
                let position = BinlogPosition::parse(&file, offset).map_err(Error::Prerequisite)?;
                gtid = Some(tokio::spawn(gtid_of(source.clone(), position.clone())));
                position
            }
            Flavor::MySql => {
                conn.query_drop("FLUSH TABLES WITH READ LOCK").await.map_err(|e| {
                    Error::mysql(
                        "taking the brief global read lock (the account needs the RELOAD privilege)",
                        e,
                    )
                })?;
                let opened = Self::mysql_position_under_lock(&mut conn).await;
                conn.query_drop("UNLOCK TABLES")
                    .await
                    .map_err(q("releasing the global read lock"))?;
                opened?
            }
        };
        Ok(ConsistentRead {
            conn,
            position,
            gtid,
        })
    }

    /// The binlog position of the view, with its GTID where the server has
    /// one.
    pub async fn position(&mut self) -> Result<BinlogPosition> {
        if let Some(lookup) = self.gtid.take() {
            let gtid = lookup
                .await
                .map_err(|e| Error::task("the GTID lookup of the snapshot", e))??;
            self.position = self.position.clone().with_gtid(gtid);
        }
        Ok(self.position.clone())
    }

    /// The binlog file and offset of the view, known from the start.
    pub fn file_position(&self) -> &BinlogPosition {
        &self.position
    }

    async fn mysql_position_under_lock(conn: &mut Conn) -> Result<BinlogPosition> {
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            .await
            .map_err(|e| Error::mysql("opening the consistent snapshot", e))?;
        binary_log_status(conn).await
    }

    /// The XA transactions `XA RECOVER` lists as prepared, or `None`
    /// where the account may not ask.
    pub async fn prepared_xa(&mut self) -> Option<Vec<Xid>> {
        let listed: Vec<Row> = self.conn.query("XA RECOVER").await.ok()?;
        listed
            .into_iter()
            .map(|row| {
                let format_id: i64 = row.get("formatID")?;
                let gtrid: usize = row.get("gtrid_length")?;
                let bqual: usize = row.get("bqual_length")?;
                let data: Vec<u8> = row.get("data")?;
                let ids = data.get(..gtrid.checked_add(bqual)?)?;
                let (gtrid, bqual) = ids.split_at(gtrid);
                Some(Xid::from_parts(format_id, gtrid, bqual))
            })
            .collect()
    }

    /// The server's estimate of a table's row count, for progress reporting.
    pub async fn estimated_rows(&mut self, table: Table) -> Option<u64> {
        self.conn
            .exec_first::<Option<u64>, _, _>(
                "SELECT table_rows FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name = ?",
                (table.name(),),
            )
            .await
            .ok()
            .flatten()
            .flatten()
    }

    /// A query in the transaction, for callers that need one more fact of
    /// the same view (a sample of session ids, say).
    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// Streams every row of `table` (restricted by `filter`, an SQL condition,
    /// when given) to `f`, one at a time: the table is never held in memory.
    pub async fn read(
        &mut self,
        table: Table,
        filter: Option<&str>,
        mut f: impl AsyncFnMut(SourceRow) -> Result<()>,
    ) -> Result<u64> {
        let sql = match filter {
            Some(cond) => format!("{} WHERE {cond}", table.select()),
            None => table.select(),
        };
        let context = || format!("reading `{}`", table.name());
        let mut result = self
            .conn
            .query_iter(sql)
            .await
            .map_err(|e| Error::mysql(context(), e))?;
        let mut rows = 0;
        if let Some(mut stream) = result
            .stream::<Row>()
            .await
            .map_err(|e| Error::mysql(context(), e))?
        {
            while let Some(row) = stream.next().await {
                let row = row.map_err(|e| Error::mysql(context(), e))?;
                f(table.decode(row.unwrap())?).await?;
                rows += 1;
            }
        }
        Ok(rows)
    }

    /// Ends the read-only transaction.
    pub async fn finish(mut self) -> Result<()> {
        self.conn
            .query_drop("COMMIT")
            .await
            .map_err(|e| Error::mysql("ending the snapshot transaction", e))?;
        let _ = self.conn.disconnect().await;
        Ok(())
    }
}

/// MariaDB's GTID position at a binlog file and offset, read on a connection
/// of its own.
async fn gtid_of(source: MySqlSource, position: BinlogPosition) -> Result<Option<String>> {
    let mut conn = source.connect().await?;
    let gtid: Option<Option<String>> = conn
        .exec_first(
            "SELECT BINLOG_GTID_POS(?, ?)",
            (position.file.as_str(), position.offset),
        )
        .await
        .map_err(|e| Error::mysql("reading the snapshot's GTID position", e))?;
    let _ = conn.disconnect().await;
    Ok(gtid.flatten())
}

/// `SHOW BINARY LOG STATUS` (MySQL 8.4+) or `SHOW MASTER STATUS` (MariaDB,
/// MySQL before 8.4): the end of the server's binlog.
pub(super) async fn binary_log_status(conn: &mut Conn) -> Result<BinlogPosition> {
    let row: Option<Row> = match conn.query_first("SHOW BINARY LOG STATUS").await {
        Ok(row) => row,
        Err(_) => conn
            .query_first("SHOW MASTER STATUS")
            .await
            .map_err(|e| Error::mysql("reading the binary log status", e))?,
    };
    let row = row.ok_or_else(|| {
        Error::Prerequisite("the server reports no binary log status: enable log_bin".into())
    })?;
    let file: Option<String> = row.get("File");
    let offset: Option<u64> = row.get("Position");
    let gtid: Option<String> = row.get_opt("Executed_Gtid_Set").and_then(|r| r.ok());
    match (file, offset) {
        (Some(file), Some(offset)) => Ok(BinlogPosition::parse(&file, offset)
            .map_err(Error::Prerequisite)?
            .with_gtid(gtid)),
        _ => Err(Error::Prerequisite(
            "the binary log status has no File/Position: enable log_bin".into(),
        )),
    }
}
