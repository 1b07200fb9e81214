//! Reading the binlog ahead of the loop, in a task of its own, within a
//! budget of rows.

use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::error::Result;
use crate::source::{BinlogReader, Piece};

/// A piece with its share of the read-ahead budget, given back on drop.
pub struct Budgeted {
    pub piece: Piece,
    pub rows: OwnedSemaphorePermit,
}

/// Reads pieces into the channel until an error (sent on) or the receiver
/// goes away. Each piece first takes as many of `budget_rows` permits as it
/// has rows, so the pieces read but not yet applied stay bounded.
pub async fn read_pieces(
    mut reader: BinlogReader,
    tx: mpsc::Sender<Result<Budgeted>>,
    budget_rows: u32,
) {
    let budget = Arc::new(Semaphore::new(budget_rows as usize));
    loop {
        let item = match reader.next().await {
            Ok(piece) => {
                let rows = u32::try_from(piece.content.rows())
                    .unwrap_or(u32::MAX)
                    .min(budget_rows);
                let Ok(permit) = budget.clone().acquire_many_owned(rows).await else {
                    break;
                };
                Ok(Budgeted {
                    piece,
                    rows: permit,
                })
            }
            Err(e) => Err(e),
        };
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            break;
        }
    }
    reader.close().await;
}

/// Stops a task when dropped, whichever way its owner ends.
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
