//! The verdict of `verify`, for people and for scripts.

use std::fmt;

use serde::Serialize;

use super::compare::{DiffKind, Difference};
use crate::position::BinlogPosition;

/// Counts and examples of what `verify` found.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    /// True when Redis holds exactly the model of the source.
    pub matched: bool,
    /// The binlog position of the consistent read compared against.
    pub position: String,
    /// Sessions checked out of a random sample, when `--sample` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<u64>,
    /// Live sessions the model gives (and that were judged).
    pub expected: u64,
    /// Of those, present in Redis.
    pub present: u64,
    pub missing: u64,
    /// Keys of the namespace the model does not give.
    pub extra: u64,
    /// Sessions present with a field or expiry that differs.
    pub differing: u64,
    /// User indexes with a wrong member, score or expiry.
    pub index_differences: u64,
    /// Sessions expiring within the grace period, not judged.
    pub not_judged: u64,
    pub examples: Vec<Difference>,
    #[serde(skip)]
    max_examples: usize,
}

impl VerifyReport {
    pub fn new(position: BinlogPosition, max_examples: usize, sample: Option<u64>) -> Self {
        VerifyReport {
            matched: true,
            position: position.to_string(),
            sample,
            expected: 0,
            present: 0,
            missing: 0,
            extra: 0,
            differing: 0,
            index_differences: 0,
            not_judged: 0,
            examples: Vec::new(),
            max_examples,
        }
    }

    fn example(&mut self, diffs: impl IntoIterator<Item = Difference>) {
        self.matched = false;
        for d in diffs {
            if self.examples.len() < self.max_examples {
                self.examples.push(d);
            }
        }
    }

    pub(super) fn record_session(&mut self, diffs: Vec<Difference>) {
        if diffs.is_empty() {
            return;
        }
        if diffs[0].kind == DiffKind::Missing {
            self.missing += 1;
        } else {
            self.differing += 1;
        }
        self.example(diffs);
    }

    pub(super) fn record_index(&mut self, diffs: Vec<Difference>) {
        if diffs.is_empty() {
            return;
        }
        self.index_differences += 1;
        self.example(diffs);
    }

    pub(super) fn record_extra(&mut self, diff: Difference) {
        self.extra += 1;
        self.example([diff]);
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.matched {
            writeln!(
                f,
                "MATCH: Redis holds exactly the model of the source at {}",
                self.position
            )?;
        } else {
            writeln!(
                f,
                "DIFFERENT: Redis does not match the source at {}; do not cut over",
                self.position
            )?;
        }
        if let Some(n) = self.sample {
            writeln!(
                f,
                "  (a random sample of up to {n} live sessions; extra keys not checked)"
            )?;
        }
        writeln!(f, "  expected sessions  {:>8}", self.expected)?;
        writeln!(f, "  present            {:>8}", self.present)?;
        writeln!(f, "  missing            {:>8}", self.missing)?;
        writeln!(f, "  extra keys         {:>8}", self.extra)?;
        writeln!(f, "  differing          {:>8}", self.differing)?;
        writeln!(f, "  index differences  {:>8}", self.index_differences)?;
        write!(f, "  not judged (expiring now) {:>3}", self.not_judged)?;
        for d in &self.examples {
            write!(f, "\n  - {:?} {}", d.kind, d.key)?;
            if let Some(field) = &d.field {
                write!(f, " [{field}]")?;
            }
            if d.expected.is_some() || d.found.is_some() {
                write!(
                    f,
                    ": expected {}, found {}",
                    d.expected
                        .as_deref()
                        .map_or("nothing".into(), |v| format!("{v:?}")),
                    d.found
                        .as_deref()
                        .map_or("nothing".into(), |v| format!("{v:?}")),
                )?;
            }
        }
        Ok(())
    }
}
