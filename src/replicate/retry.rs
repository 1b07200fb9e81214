//! Backoff between attempts, and incidents logged once rather than once
//! per attempt.

use std::time::{Duration, Instant};

/// Exponential backoff from 100 ms to 5 s.
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    pub fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    /// The delay before the next attempt; each call doubles the next one.
    pub fn delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// An outage of one dependency: logged when it starts and when it ends.
pub struct Incident {
    what: &'static str,
    since: Option<Instant>,
    attempts: u64,
}

impl Incident {
    pub fn new(what: &'static str) -> Self {
        Incident {
            what,
            since: None,
            attempts: 0,
        }
    }

    /// An attempt failed; logs only the first failure of the incident.
    pub fn failed(&mut self, reason: &dyn std::fmt::Display, position: &dyn std::fmt::Display) {
        self.attempts += 1;
        tracing::debug!(
            attempt = self.attempts,
            "{} unavailable: {reason}",
            self.what
        );
        if self.since.is_none() {
            self.since = Some(Instant::now());
            tracing::warn!(
                "{} unavailable: {reason}. Retrying with backoff; the checkpoint stays at {position}",
                self.what
            );
        }
    }

    /// An attempt succeeded; logs the end of the incident, if there was one,
    /// and says whether there was.
    pub fn recovered(&mut self) -> bool {
        let Some(since) = self.since.take() else {
            return false;
        };
        {
            tracing::info!(
                "{} is back after {:.1}s and {} failed attempts",
                self.what,
                since.elapsed().as_secs_f64(),
                self.attempts
            );
            self.attempts = 0;
        }
        true
    }
}

/// An outage of the source, with the backoff between its attempts.
pub struct Outage {
    incident: Incident,
    backoff: Backoff,
}

impl Outage {
    pub fn new(what: &'static str) -> Self {
        Outage {
            incident: Incident::new(what),
            backoff: Backoff::new(),
        }
    }

    /// An attempt failed: logged if it is the first; the delay before the
    /// next one.
    pub fn failed(
        &mut self,
        reason: &dyn std::fmt::Display,
        position: &dyn std::fmt::Display,
    ) -> std::time::Duration {
        self.incident.failed(reason, position);
        self.backoff.delay()
    }

    /// The source works again (a piece arrived).
    pub fn recovered(&mut self) {
        self.incident.recovered();
        self.backoff.reset();
    }
}

/// Runs `op` until it succeeds, waiting out transient errors (Redis
/// unreachable, failing over) with backoff and logging the outage once;
/// `position` is named as where the checkpoint stays. Any other error, or
/// shutdown during the wait, ends it with an error.
pub async fn patiently<T>(
    what: &'static str,
    position: &dyn std::fmt::Display,
    shutdown: &tokio_util::sync::CancellationToken,
    mut op: impl AsyncFnMut() -> crate::Result<T>,
) -> crate::Result<T> {
    let mut incident = Incident::new(what);
    let mut backoff = Backoff::new();
    loop {
        match op().await {
            Ok(done) => {
                incident.recovered();
                return Ok(done);
            }
            Err(e) if e.is_transient() => {
                incident.failed(&e, position);
                tokio::select! {
                    _ = tokio::time::sleep(backoff.delay()) => {}
                    _ = shutdown.cancelled() => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new();
        let delays: Vec<_> = (0..8).map(|_| b.delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.delay().as_millis(), 100);
    }
}
