//! Cold start: one consistent read of the four tables into the state, the
//! namespace's stale keys removed, the whole model written to Redis, and a
//! checkpoint at the read's binlog position.
//!
//! Order matters for crash safety: the checkpoint is cleared first and
//! written last, after Redis acknowledged everything and the namespace's
//! marker names this snapshot. A snapshot cut off anywhere leaves no
//! checkpoint, and the next `run` starts it again.

mod load;
mod materialize;

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use materialize::{materialize, model_batches, remove_stale, Materialized};

use crate::error::{Error, Result};
use crate::model::{Command, Keys, Timestamp};
use crate::position::BinlogPosition;
use crate::progress::Progress;
use crate::sink::RedisSink;
use crate::source::{ConsistentRead, Flavor, MySqlSource};
use crate::state::{Checkpoint, SnapshotInfo, StateStore, STATE_FORMAT};

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
    pub progress: Progress,
    pub shutdown: CancellationToken,
}

impl SnapshotJob<'_> {
    /// Takes the snapshot and commits its checkpoint.
    pub async fn run(self) -> Result<(Checkpoint, SnapshotReport)> {
        let started = Instant::now();
        self.state.clear()?;
        let taken_at = Timestamp::now();
        let mut read = ConsistentRead::begin(self.source, self.flavor).await?;
        let position = read.position.clone();
        tracing::info!(%position, database = self.source.database(), "snapshot: consistent read opened");

        let rows =
            load::load_tables(&mut read, self.state, &self.progress, &self.shutdown, None).await?;
        read.finish().await?;
        self.check_shutdown()?;
        let secs = |since: Instant| since.elapsed().as_secs_f64();
        tracing::info!(
            "snapshot: tables read into the state in {:.1}s",
            secs(started)
        );

        // Stale keys first: the namespace then holds only what earlier runs
        // left, so a cold start scans nothing it has just written. A key the
        // new state still gives is kept here and rewritten below.
        let phase = Instant::now();
        let now = Timestamp::now();
        let stale = materialize::remove_stale(self.state, self.sink, self.keys, now).await?;
        tracing::info!(
            "snapshot: {stale} stale keys removed in {:.1}s",
            secs(phase)
        );
        self.check_shutdown()?;

        let phase = Instant::now();
        let written = materialize(self.state, self.sink, self.keys, now, &self.shutdown).await?;
        self.check_shutdown()?;
        tracing::info!(
            "snapshot: {} sessions written in {:.1}s",
            written.sessions,
            secs(phase)
        );

        let snapshot = SnapshotInfo {
            id: format!(
                "{}@{}:{}",
                taken_at.micros(),
                position.file,
                position.offset
            ),
            taken_at: taken_at.micros() / 1_000_000,
            database: self.source.database().to_string(),
            position: position.clone(),
        };
        self.sink
            .write(
                &[Command::Set {
                    key: self.keys.marker(),
                    value: snapshot.id.clone().into_bytes(),
                }],
                false,
            )
            .await?;
        let checkpoint = Checkpoint {
            format: STATE_FORMAT,
            position: position.clone(),
            snapshot,
            committed_at: Timestamp::now().micros() / 1_000_000,
            skip_rows: 0,
        };
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

pub use load::load_tables;
