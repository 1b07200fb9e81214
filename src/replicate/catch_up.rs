//! While far behind, a progress line every few seconds.

use std::time::Duration;

use tokio::time::Instant;

use crate::position::BinlogPosition;

pub struct CatchUpLog {
    since: Instant,
    rows: u64,
}

impl CatchUpLog {
    const EVERY: Duration = Duration::from_secs(5);
    const BEHIND: Duration = Duration::from_secs(5);

    pub fn new() -> Self {
        CatchUpLog {
            since: Instant::now(),
            rows: 0,
        }
    }

    pub fn record(&mut self, rows: u64, lag: Duration, position: &BinlogPosition) {
        self.rows += rows;
        let elapsed = self.since.elapsed();
        if elapsed >= Self::EVERY {
            if lag >= Self::BEHIND {
                tracing::info!(
                    "catching up: {} row events in {:.0}s ({:.0}/s), {}s behind, at {position}",
                    self.rows,
                    elapsed.as_secs_f64(),
                    self.rows as f64 / elapsed.as_secs_f64(),
                    lag.as_secs()
                );
            }
            *self = CatchUpLog::new();
        }
    }
}
