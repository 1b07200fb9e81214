//! Streaming the tables of a consistent read into the state.

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::source::{ConsistentRead, SourceRow, Table};
use crate::state::{StateBatch, StateStore};

/// Rows per state write while loading.
const ROWS_PER_WRITE: usize = 5_000;

/// Reads `tables` (each restricted by `filter`, when given) into the state.
/// Returns the rows read per table.
pub async fn load_tables(
    read: &mut ConsistentRead,
    state: &StateStore,
    tables: &[Table],
    progress: &Progress,
    shutdown: &CancellationToken,
    filter: Option<&dyn Fn(Table) -> String>,
) -> Result<Vec<(&'static str, u64)>> {
    let mut counts = Vec::new();
    for &table in tables {
        let condition = filter.map(|f| f(table));
        let rows = load_table(
            read,
            state,
            table,
            condition.as_deref(),
            progress,
            shutdown,
            async |_| Ok(()),
        )
        .await?;
        counts.push((table.name(), rows));
    }
    Ok(counts)
}

/// Reads one table into the state, handing each row to `also` after it
/// was put in the state's next write. Returns the rows read.
pub async fn load_table(
    read: &mut ConsistentRead,
    state: &StateStore,
    table: Table,
    condition: Option<&str>,
    progress: &Progress,
    shutdown: &CancellationToken,
    mut also: impl AsyncFnMut(SourceRow) -> Result<()>,
) -> Result<u64> {
    let estimate = read.estimated_rows(table).await.unwrap_or(0);
    let mut tracker = progress.start(table.name(), estimate);
    let mut loader = Loader::new(state);
    read.read(table, condition, async |row| {
        loader.put(&row);
        tracker.inc(1);
        if loader.full() {
            loader.write().await?;
            if shutdown.is_cancelled() {
                return Err(Error::Interrupted("snapshot stopped while loading".into()));
            }
        }
        also(row).await
    })
    .await?;
    loader.finish().await?;
    Ok(tracker.finish())
}

/// Rows gathered into batches, each written by a blocking task while the
/// next one fills. Written without the write-ahead log: a snapshot persists
/// the state before it commits its checkpoint.
struct Loader {
    state: StateStore,
    batch: StateBatch,
    rows: usize,
    writing: Option<JoinHandle<Result<()>>>,
}

impl Loader {
    fn new(state: &StateStore) -> Self {
        Loader {
            state: state.clone(),
            batch: state.batch(),
            rows: 0,
            writing: None,
        }
    }

    fn put(&mut self, row: &SourceRow) {
        match row {
            SourceRow::User(u) => self.batch.put_user(u),
            SourceRow::Preferences(p) => self.batch.put_preferences(p),
            SourceRow::Session(s) => self.batch.put_session(s),
            SourceRow::Attribute(a) => self.batch.put_attribute(a),
        }
        self.rows += 1;
    }

    fn full(&self) -> bool {
        self.rows >= ROWS_PER_WRITE
    }

    /// Starts writing the batch, once the one before it is written.
    async fn write(&mut self) -> Result<()> {
        self.wait().await?;
        let batch = std::mem::replace(&mut self.batch, self.state.batch());
        self.rows = 0;
        let state = self.state.clone();
        self.writing = Some(tokio::task::spawn_blocking(move || {
            state.write_unlogged(batch)
        }));
        Ok(())
    }

    async fn wait(&mut self) -> Result<()> {
        match self.writing.take() {
            Some(task) => task
                .await
                .map_err(|e| Error::task("a state write of the snapshot", e))?,
            None => Ok(()),
        }
    }

    async fn finish(mut self) -> Result<()> {
        self.write().await?;
        self.wait().await
    }
}
