//! How fast bulk writes may go: `--snapshot-max-rate`, in Redis commands
//! per second.
//!
//! Commands, not sessions, because commands are what a Redis serving live
//! traffic spends its time on and what its operator watches (`INFO`'s
//! `instantaneous_ops_per_sec`, the exporters' commands/s): a session
//! costs one `HSET` and one `EXPIREAT` whatever its attribute count, and a
//! user's index a `ZADD` and an `EXPIREAT`, so the limit bounds Redis's
//! load directly, where a sessions-per-second limit would let it vary with
//! the data.
//!
//! The limit covers every bulk write: the snapshot's sessions and indexes,
//! its removal of stale keys, and the rebuild of a lost namespace. Under a
//! limit, batches are smaller, so that a reader never waits behind a long
//! `MULTI`/`EXEC`.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Commands per batch without a limit (about 500 sessions).
pub const COMMANDS_PER_BATCH: usize = 1_500;
/// Under a limit, batches of at most this many commands per second of the
/// limit's rate: twenty batches a second or more.
const BATCHES_PER_SECOND: u32 = 20;
/// The smallest batch under a limit.
const MIN_BATCH: usize = 16;

/// The pace of bulk writes, shared by the tasks that write them.
#[derive(Clone, Debug, Default)]
pub struct Pace {
    limit: Option<Limit>,
}

#[derive(Clone, Debug)]
struct Limit {
    per_second: NonZeroU32,
    batch: usize,
    limiter: Arc<DefaultDirectRateLimiter>,
}

impl Pace {
    /// As fast as Redis takes it.
    pub fn unlimited() -> Self {
        Pace { limit: None }
    }

    /// At most `per_second` commands a second; `None` or 0 is unlimited.
    pub fn per_second(per_second: Option<u32>) -> Self {
        let Some(per_second) = per_second.and_then(NonZeroU32::new) else {
            return Pace::unlimited();
        };
        let batch = (per_second.get() / BATCHES_PER_SECOND) as usize;
        let batch = batch.clamp(MIN_BATCH, COMMANDS_PER_BATCH);
        // A burst of one batch: a batch waits for its own commands only,
        // and the long-run rate is the limit.
        let burst = NonZeroU32::new(batch as u32).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(per_second).allow_burst(burst);
        Pace {
            limit: Some(Limit {
                per_second,
                batch,
                limiter: Arc::new(RateLimiter::direct(quota)),
            }),
        }
    }

    /// The limit, in commands per second.
    pub fn limit(&self) -> Option<u32> {
        self.limit.as_ref().map(|l| l.per_second.get())
    }

    /// How many commands a batch holds.
    pub fn batch_commands(&self) -> usize {
        self.limit.as_ref().map_or(COMMANDS_PER_BATCH, |l| l.batch)
    }

    /// Waits until `commands` more commands may be written.
    pub async fn admit(&self, commands: usize) {
        let Some(limit) = &self.limit else { return };
        let mut left = commands;
        while left > 0 {
            let n = left.min(limit.batch);
            left -= n;
            let n = NonZeroU32::new(n as u32).unwrap_or(NonZeroU32::MIN);
            // `n` never exceeds the burst, so capacity is never short.
            let _ = limit.limiter.until_n_ready(n).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn batches_are_smaller_under_a_limit() {
        assert_eq!(Pace::unlimited().batch_commands(), COMMANDS_PER_BATCH);
        assert_eq!(Pace::per_second(Some(0)).limit(), None);
        assert_eq!(Pace::per_second(Some(10_000)).batch_commands(), 500);
        assert_eq!(Pace::per_second(Some(100)).batch_commands(), MIN_BATCH);
        assert_eq!(
            Pace::per_second(Some(1_000_000)).batch_commands(),
            COMMANDS_PER_BATCH
        );
    }

    #[tokio::test]
    async fn the_long_run_rate_is_the_limit() {
        let pace = Pace::per_second(Some(2_000));
        let started = Instant::now();
        // One burst of a batch (100) free, then 900 commands at 2,000/s.
        for _ in 0..10 {
            pace.admit(pace.batch_commands()).await;
        }
        let secs = started.elapsed().as_secs_f64();
        // Never faster than the limit; slower only by the timer's slack.
        assert!((0.44..3.0).contains(&secs), "{secs}s");
    }
}
