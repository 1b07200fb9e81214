//! Streaming the four tables of a consistent read into the state.

use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::source::{ConsistentRead, SourceRow, TableRows};
use crate::state::{StateBatch, StateStore};

/// Rows per state write while loading.
const ROWS_PER_WRITE: usize = 5_000;

/// Reads every table (restricted per table by `filter`, when given) into the
/// state. Returns the rows read per table.
pub async fn load_tables(
    read: &mut ConsistentRead,
    state: &StateStore,
    progress: &Progress,
    shutdown: &CancellationToken,
    filter: Option<&dyn Fn(TableRows) -> String>,
) -> Result<Vec<(&'static str, u64)>> {
    let mut counts = Vec::new();
    for table in TableRows::ALL {
        let estimate = read.estimated_rows(table).await.unwrap_or(0);
        let mut tracker = progress.start(table.table(), estimate);
        let mut batch = state.batch();
        let mut pending = 0;
        let condition = filter.map(|f| f(table));
        read.read(table, condition.as_deref(), |row| {
            put(&mut batch, &row);
            pending += 1;
            tracker.inc(1);
            if pending >= ROWS_PER_WRITE {
                state.write(std::mem::replace(&mut batch, state.batch()))?;
                pending = 0;
                if shutdown.is_cancelled() {
                    return Err(Error::Interrupted("snapshot stopped while loading".into()));
                }
            }
            Ok(())
        })
        .await?;
        state.write(batch)?;
        counts.push((table.table(), tracker.finish()));
    }
    Ok(counts)
}

fn put(batch: &mut StateBatch, row: &SourceRow) {
    match row {
        SourceRow::User(u) => batch.put_user(u),
        SourceRow::Preferences(p) => batch.put_preferences(p),
        SourceRow::Session(s) => batch.put_session(s),
        SourceRow::Attribute(a) => batch.put_attribute(a),
    }
}
