//! Cold start: one consistent read of the four tables into the state, the
//! whole model written to Redis, the namespace's stale keys removed, and a
//! checkpoint at the read's binlog position.
//!
//! Sessions are read last, and each one's hash is written to Redis as it is
//! read (its attributes and user come from the state), so that reading
//! MySQL and writing Redis overlap. Users' indexes follow, from the state.
//!
//! Order matters for crash safety: the checkpoint is cleared first and
//! written last, after Redis acknowledged everything and the namespace's
//! marker names this snapshot. A snapshot cut off anywhere leaves no
//! checkpoint, and the next `run` starts it again.

mod hashes;
mod load;
mod materialize;
mod pace;
mod writer;

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use hashes::Materialized;
pub use load::load_tables;
pub use materialize::{materialize, model_batches, remove_stale};
pub use pace::{Pace, COMMANDS_PER_BATCH};

use hashes::{index_batches, SessionHashes};
use writer::BatchWriter;

use crate::error::{Error, Result};
use crate::model::{Keys, Timestamp};
use crate::position::BinlogPosition;
use crate::progress::Progress;
use crate::replicate::patiently;
use crate::sink::{RedisSink, Scope};
use crate::source::{ConsistentRead, Flavor, MySqlSource, SourceRow, Table};
use crate::state::{Checkpoint, SnapshotInfo, StateStore, STATE_FORMAT};
use crate::telemetry;

/// What a snapshot did.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotReport {
    /// Rows read per table.
    pub rows: Vec<(&'static str, u64)>,
    pub sessions_written: u64,
    pub expired_skipped: u64,
    pub stale_keys_removed: u64,
    pub position: BinlogPosition,
    #[serde(serialize_with = "as_secs")]
    pub elapsed: Duration,
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl std::fmt::Display for SnapshotReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "snapshot complete in {:.1}s at {}",
            self.elapsed.as_secs_f64(),
            self.position
        )?;
        for (table, rows) in &self.rows {
            writeln!(f, "  {table:<17} {rows:>10} rows read")?;
        }
        writeln!(f, "  sessions written  {:>10}", self.sessions_written)?;
        writeln!(f, "  expired skipped   {:>10}", self.expired_skipped)?;
        write!(f, "  stale keys removed{:>10}", self.stale_keys_removed)
    }
}

/// Everything a snapshot needs.
pub struct SnapshotJob<'a> {
    pub source: &'a MySqlSource,
    pub flavor: Flavor,
    pub state: &'a StateStore,
    pub sink: &'a RedisSink,
    pub keys: &'a Keys,
    /// How fast it may write Redis.
    pub pace: Pace,
    pub progress: Progress,
    pub shutdown: CancellationToken,
}

impl SnapshotJob<'_> {
    /// Opens the consistent read, at a moment when no XA transaction is
    /// prepared that the state does not hold already, if one comes within a
    /// few seconds. A snapshot cannot see a prepared transaction's rows, and
    /// its `XA COMMIT` names no database: should one prepared across the
    /// snapshot, and not held from the stream before, commit later, `run`
    /// stops there (and `--resnapshot-if-needed` takes a fresh snapshot).
    async fn open_read(&self) -> Result<ConsistentRead> {
        const TRIES: u32 = 10;
        let held = self.state.held_xa_ids()?;
        let mut attempt = 1;
        loop {
            let mut read = ConsistentRead::begin(self.source, self.flavor).await?;
            let prepared = read.prepared_xa().await;
            // Held from the stream before: those still prepared stay held,
            // the others were resolved before this read and go.
            if let Some(prepared) = &prepared {
                let gone: Vec<String> = held
                    .iter()
                    .filter(|id| !prepared.iter().any(|x| x.0 == **id))
                    .cloned()
                    .collect();
                self.state.release_held_xa(&gone)?;
            }
            let unknown = prepared
                .unwrap_or_default()
                .into_iter()
                .filter(|x| !held.contains(&x.0))
                .count();
            if unknown == 0 {
                return Ok(read);
            }
            if attempt == TRIES || self.shutdown.is_cancelled() {
                tracing::warn!(
                    prepared = unknown,
                    "XA transactions are prepared on the server and not yet committed: the snapshot \
                     cannot see their rows, so if one of them later commits, `run` stops at its XA \
                     COMMIT (or takes a fresh snapshot, with --resnapshot-if-needed). Commit or roll \
                     them back (XA RECOVER lists them), then snapshot again, to avoid it"
                );
                return Ok(read);
            }
            read.finish().await?;
            tracing::info!(
                prepared = unknown,
                "snapshot: waiting for prepared XA transactions to end"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            attempt += 1;
        }
    }

    /// Takes the snapshot and commits its checkpoint.
    pub async fn run(self) -> Result<(Checkpoint, SnapshotReport)> {
        let _running = telemetry::SnapshotRunning::start();
        let started = Instant::now();
        self.state.clear()?;
        // Whatever an earlier run left is looked for before anything is
        // written: a cold start into an empty namespace then scans nothing.
        let earlier_keys = self.sink.any_key(&self.keys.model_patterns()).await?;
        let taken_at = Timestamp::now();
        let mut read = self.open_read().await?;
        let opened_at = read.file_position().clone();
        tracing::info!(position = %opened_at, database = self.source.database(), "snapshot: consistent read opened");

        use Table::{Attributes, Preferences, Users};
        let mut rows = load::load_tables(
            &mut read,
            self.state,
            &[Users, Preferences, Attributes],
            &self.progress,
            &self.shutdown,
            None,
        )
        .await?;
        let secs = |since: Instant| since.elapsed().as_secs_f64();
        tracing::info!(
            "snapshot: users, preferences and attributes read into the state in {:.1}s",
            secs(started)
        );

        // The marker names this snapshot before any of its writes, and every
        // batch checks that it is still there: Redis losing the namespace
        // midway (a restart without persistence) fails the snapshot instead
        // of leaving a namespace with holes under a marker written last.
        let snapshot = SnapshotInfo {
            id: format!(
                "{}@{}:{}",
                taken_at.micros(),
                opened_at.file,
                opened_at.offset
            ),
            taken_at: taken_at.micros() / 1_000_000,
            database: self.source.database().to_string(),
            position: read.position().await?,
        };
        let position = snapshot.position.clone();
        self.sink
            .set_markers(&self.keys.marker(), &snapshot.id, &Scope::All)
            .await?;
        // Sessions last: each one's hash is written to Redis as it is read.
        let phase = Instant::now();
        let now = Timestamp::now();
        if let Some(limit) = self.pace.limit() {
            tracing::info!(
                "snapshot: writing Redis at most {limit} commands/s (--snapshot-max-rate)"
            );
        }
        let writer = BatchWriter::spawn(self.sink, Some(self.keys.marker()), &self.pace);
        let produced = async {
            let sessions = self.load_sessions(&mut read, &writer, now).await?;
            read.finish().await?;
            self.write_indexes(&writer, now).await?;
            Ok(sessions)
        }
        .await;
        let (session_rows, written) = writer.finish(produced).await?;
        rows.push((Table::Sessions.name(), session_rows));
        self.check_shutdown()?;
        tracing::info!(
            "snapshot: {} sessions read and written in {:.1}s",
            written.sessions,
            secs(phase)
        );

        let stale = if earlier_keys {
            let phase = Instant::now();
            let stale = remove_stale(
                self.state,
                self.sink,
                self.keys,
                now,
                &self.pace,
                &Scope::All,
            )
            .await?;
            tracing::info!(
                "snapshot: {stale} stale keys removed in {:.1}s",
                secs(phase)
            );
            stale
        } else {
            0
        };
        self.check_shutdown()?;
        // With --redis-wait-replicas, the replicas have it all before the
        // checkpoint counts it as written.
        patiently("Redis replicas", &position, &self.shutdown, async || {
            self.sink.wait_for_replicas().await
        })
        .await?;

        let checkpoint = Checkpoint {
            format: STATE_FORMAT,
            position: position.clone(),
            snapshot,
            committed_at: Timestamp::now().micros() / 1_000_000,
            skip_rows: 0,
        };
        self.state.persist()?;
        self.state.commit(self.state.batch(), &checkpoint)?;
        let report = SnapshotReport {
            rows,
            sessions_written: written.sessions,
            expired_skipped: written.expired,
            stale_keys_removed: stale,
            position,
            elapsed: started.elapsed(),
        };
        tracing::info!(
            sessions = report.sessions_written,
            expired = report.expired_skipped,
            stale = report.stale_keys_removed,
            position = %report.position,
            "snapshot complete"
        );
        Ok((checkpoint, report))
    }

    /// Reads the sessions into the state and queues each live one's hash.
    /// Returns the rows read and what was queued.
    async fn load_sessions(
        &self,
        read: &mut ConsistentRead,
        writer: &BatchWriter,
        now: Timestamp,
    ) -> Result<(u64, Materialized)> {
        let mut hashes = SessionHashes::new(self.state, self.keys, now);
        let batch_commands = self.pace.batch_commands();
        let mut batch = Vec::with_capacity(batch_commands + 8);
        let rows = load::load_table(
            read,
            self.state,
            Table::Sessions,
            None,
            &self.progress,
            &self.shutdown,
            async |row| {
                if let SourceRow::Session(session) = row {
                    hashes.write(&session, &mut batch)?;
                }
                if batch.len() >= batch_commands {
                    writer.send(std::mem::take(&mut batch)).await?;
                }
                Ok(())
            },
        )
        .await?;
        writer.send(batch).await?;
        Ok((rows, hashes.done))
    }

    /// Queues every user's index, once the sessions are in the state.
    async fn write_indexes(&self, writer: &BatchWriter, now: Timestamp) -> Result<()> {
        let (state, keys, tx) = (self.state.clone(), self.keys.clone(), writer.sender());
        let batch_commands = self.pace.batch_commands();
        tokio::task::spawn_blocking(move || {
            index_batches(&state, &keys, now, batch_commands, &Scope::All, |batch| {
                tx.blocking_send(batch).map_err(|_| writer::stopped())
            })
        })
        .await
        .map_err(|e| Error::task("the snapshot's index encoder", e))?
    }

    fn check_shutdown(&self) -> Result<()> {
        if self.shutdown.is_cancelled() {
            Err(Error::Interrupted(
                "snapshot stopped before it completed; no checkpoint was written, the next run starts it again".into(),
            ))
        } else {
            Ok(())
        }
    }
}
