//! Liveness and readiness, as the pipeline reports them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Shared between the pipeline (which writes) and the HTTP server (which reads).
#[derive(Debug)]
pub struct Health {
    mysql_up: AtomicBool,
    redis_up: AtomicBool,
    streaming: AtomicBool,
    /// The stream stopped on an event it cannot apply: unhealthy for good.
    stopped: AtomicBool,
    /// Redis refuses writes for lack of memory (`OOM`): unhealthy meanwhile.
    redis_full: AtomicBool,
    /// Replication lag in milliseconds; `u64::MAX` while unknown.
    lag_ms: AtomicU64,
    ready_max_lag: Duration,
}

impl Health {
    pub fn new(ready_max_lag: Duration) -> Self {
        Health {
            mysql_up: AtomicBool::new(false),
            redis_up: AtomicBool::new(false),
            streaming: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            redis_full: AtomicBool::new(false),
            lag_ms: AtomicU64::new(u64::MAX),
            ready_max_lag,
        }
    }

    pub fn set_mysql_up(&self, up: bool) {
        self.mysql_up.store(up, Ordering::Relaxed);
    }

    pub fn set_redis_up(&self, up: bool) {
        self.redis_up.store(up, Ordering::Relaxed);
    }

    pub fn set_streaming(&self, streaming: bool) {
        self.streaming.store(streaming, Ordering::Relaxed);
    }

    /// The stream stopped on an event it cannot apply exactly.
    pub fn set_stopped(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.streaming.store(false, Ordering::Relaxed);
    }

    pub fn set_redis_full(&self, full: bool) {
        self.redis_full.store(full, Ordering::Relaxed);
    }

    pub fn set_lag(&self, lag: Duration) {
        let ms = u64::try_from(lag.as_millis()).unwrap_or(u64::MAX - 1);
        self.lag_ms.store(ms, Ordering::Relaxed);
    }

    pub fn is_streaming(&self) -> bool {
        self.streaming.load(Ordering::Relaxed)
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// The replicator runs and both connections are up.
    pub fn is_healthy(&self) -> bool {
        self.mysql_up.load(Ordering::Relaxed)
            && self.redis_up.load(Ordering::Relaxed)
            && !self.stopped.load(Ordering::Relaxed)
            && !self.redis_full.load(Ordering::Relaxed)
    }

    /// Streaming, healthy, and caught up: the lag is known and under the limit.
    pub fn is_ready(&self) -> bool {
        let lag = self.lag_ms.load(Ordering::Relaxed);
        self.is_healthy()
            && self.streaming.load(Ordering::Relaxed)
            && lag != u64::MAX
            && Duration::from_millis(lag) <= self.ready_max_lag
    }

    /// A one-line account, for the HTTP bodies.
    pub fn describe(&self) -> String {
        let lag = match self.lag_ms.load(Ordering::Relaxed) {
            u64::MAX => "unknown".to_string(),
            ms => format!("{:.1}s", ms as f64 / 1000.0),
        };
        let redis = match self.redis_full.load(Ordering::Relaxed) {
            true => "out of memory (OOM)",
            false => up(self.redis_up.load(Ordering::Relaxed)),
        };
        let stopped = match self.stopped.load(Ordering::Relaxed) {
            true => ", stopped on an event it cannot apply (see the log)",
            false => "",
        };
        format!(
            "mysql {}, redis {redis}, {}, lag {lag} (ready under {}s){stopped}\n",
            up(self.mysql_up.load(Ordering::Relaxed)),
            if self.streaming.load(Ordering::Relaxed) {
                "streaming"
            } else {
                "not streaming"
            },
            self.ready_max_lag.as_secs_f64()
        )
    }
}

fn up(b: bool) -> &'static str {
    if b {
        "up"
    } else {
        "down"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_streaming_healthy_and_caught_up() {
        let h = Health::new(Duration::from_secs(5));
        assert!(!h.is_healthy() && !h.is_ready());
        h.set_mysql_up(true);
        h.set_redis_up(true);
        h.set_streaming(true);
        assert!(h.is_healthy() && !h.is_ready(), "lag unknown");
        h.set_lag(Duration::from_secs(60));
        assert!(!h.is_ready());
        h.set_lag(Duration::from_millis(200));
        assert!(h.is_ready());
        h.set_redis_up(false);
        assert!(!h.is_healthy() && !h.is_ready());
        h.set_redis_up(true);
        h.set_redis_full(true);
        assert!(!h.is_healthy(), "Redis out of memory");
        h.set_redis_full(false);
        assert!(h.is_ready());
        h.set_stopped();
        assert!(!h.is_healthy() && !h.is_ready());
        assert!(h.describe().contains("stopped"));
    }
}
