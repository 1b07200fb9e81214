//! Progress of long work: bars on a terminal, periodic log lines elsewhere.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a progress line is logged when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// A set of progress bars, one per unit of work.
#[derive(Clone)]
pub struct Progress {
    bars: Option<MultiProgress>,
}

impl Progress {
    /// Bars when stderr is a terminal, log lines otherwise.
    pub fn for_stderr() -> Self {
        let bars = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress { bars }
    }

    /// No bars, only log lines.
    pub fn logs_only() -> Self {
        Progress { bars: None }
    }

    /// Tracks `name`, with `estimate` units expected (the server's estimate of
    /// a table's rows; 0 when unknown).
    pub fn start(&self, name: &str, estimate: u64) -> Tracker {
        let bar = self.bars.as_ref().map(|bars| {
            let bar = bars.add(ProgressBar::new(estimate));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>17} [{bar:30}] {human_pos}/{human_len} rows {per_sec} eta {eta}",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            bar.set_prefix(name.to_string());
            bar
        });
        Tracker {
            name: name.to_string(),
            estimate,
            done: 0,
            bar,
            started: Instant::now(),
            last_log: Instant::now(),
        }
    }
}

/// Progress of one unit of work.
pub struct Tracker {
    name: String,
    estimate: u64,
    done: u64,
    bar: Option<ProgressBar>,
    started: Instant,
    last_log: Instant,
}

impl Tracker {
    pub fn inc(&mut self, n: u64) {
        self.done += n;
        if self.done % 4096 < n {
            crate::telemetry::snapshot_rows(&self.name, self.done, self.estimate);
        }
        match &self.bar {
            Some(bar) => {
                if self.done > bar.length().unwrap_or(0) {
                    bar.set_length(self.done);
                }
                bar.inc(n)
            }
            None if self.last_log.elapsed() >= LOG_EVERY => {
                self.last_log = Instant::now();
                let left = self.estimate.saturating_sub(self.done) as f64;
                tracing::info!(
                    "{}: {} of about {} rows ({:.0} rows/s, eta {:.0}s)",
                    self.name,
                    self.done,
                    self.estimate.max(self.done),
                    self.rate(),
                    left / self.rate().max(1e-3)
                );
            }
            None => {}
        }
    }

    pub fn done(&self) -> u64 {
        self.done
    }

    /// Rows per second since the start: under `--snapshot-max-rate`, the
    /// rate the limit lets through, so the ETA follows the limit.
    fn rate(&self) -> f64 {
        self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-3)
    }

    pub fn finish(self) -> u64 {
        crate::telemetry::snapshot_rows(&self.name, self.done, self.estimate);
        if let Some(bar) = &self.bar {
            bar.set_length(self.done);
            bar.finish();
        }
        self.done
    }
}
