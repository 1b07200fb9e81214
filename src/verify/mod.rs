//! `replicator verify`: compares Redis with MySQL, field by field, per the model.
//!
//! The four tables are read in one consistent view into a scratch state
//! store (the same loader the snapshot uses, so memory does not grow with
//! table size), and the model of that state is compared with Redis: every
//! live session's hash and expiry, every user's index, and, for a full
//! check, any key of the namespace the model does not give.

mod compare;
mod report;

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use tokio_util::sync::CancellationToken;

pub use compare::{DiffKind, Difference};
pub use report::VerifyReport;

use crate::error::{Error, Result};
use crate::model::StateView;
use crate::model::{self, Bytes, Keys, Timestamp};
use crate::progress::Progress;
use crate::sink::RedisSink;
use crate::source::{ConsistentRead, Flavor, MySqlSource, Table};
use crate::state::{StateReader, StateStore};

/// Sessions compared per Redis round trip.
const SESSIONS_PER_FETCH: usize = 200;

/// How to verify.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// Check only this many random live sessions, and no extra keys.
    pub sample: Option<u64>,
    /// Differences kept as examples.
    pub examples: usize,
    /// Sessions expiring within this many seconds are not judged.
    pub grace_seconds: i64,
}

/// Runs the comparison.
pub async fn verify(
    source: &MySqlSource,
    flavor: Flavor,
    sink: &RedisSink,
    keys: &Keys,
    options: &VerifyOptions,
) -> Result<VerifyReport> {
    let scratch = tempfile::Builder::new()
        .prefix("replicator-verify-")
        .tempdir()
        .map_err(|e| {
            Error::Config(format!(
                "cannot create a scratch directory for verify's copy of the tables: {e}. \
                 Set TMPDIR to a writable directory"
            ))
        })?;
    let state = StateStore::open(scratch.path())?;
    let mut read = ConsistentRead::begin(source, flavor).await?;
    let filter = match options.sample {
        Some(n) => Some(sample_filter(&mut read, n).await?),
        None => None,
    };
    let by_table = |t: Table| filter.as_ref().map(|f| f(t)).unwrap_or_default();
    let filter_fn: Option<&dyn Fn(Table) -> String> = filter.as_ref().map(|_| &by_table as _);
    load_for_verify(&mut read, &state, filter_fn).await?;
    let position = read.position().await?;
    read.finish().await?;

    let now = Timestamp::now();
    let mut checker = Checker {
        sink,
        keys,
        report: VerifyReport::new(position, options.examples, options.sample),
        judge_after: now,
        grace_seconds: options.grace_seconds,
        now,
        pending: Vec::new(),
        expected_users: BTreeMap::new(),
    };
    checker.check_sessions(&state).await?;
    if options.sample.is_none() {
        checker.check_indexes(&state).await?;
        checker.check_extra_keys(&state).await?;
    } else {
        checker.check_index_membership().await?;
    }
    drop(state);
    Ok(checker.report)
}

async fn load_for_verify(
    read: &mut ConsistentRead,
    state: &StateStore,
    filter: Option<&dyn Fn(Table) -> String>,
) -> Result<()> {
    crate::snapshot::load_tables(
        read,
        state,
        &Table::ALL,
        &Progress::logs_only(),
        &CancellationToken::new(),
        filter,
    )
    .await
    .map(|_| ())
}

/// Picks `n` random live sessions and returns, per table, the SQL condition
/// that selects their rows and those of their users.
async fn sample_filter(read: &mut ConsistentRead, n: u64) -> Result<impl Fn(Table) -> String> {
    use mysql_async::prelude::Queryable;
    let ids: Vec<Vec<u8>> = read
        .conn()
        .exec(
            "SELECT session_id FROM user_sessions WHERE expires_at > NOW() ORDER BY RAND() LIMIT ?",
            (n,),
        )
        .await
        .map_err(|e| Error::mysql("choosing a sample of sessions", e))?;
    let list = if ids.is_empty() {
        "NULL".to_string()
    } else {
        ids.iter()
            .map(|id| format!("X'{}'", hex(id)))
            .collect::<Vec<_>>()
            .join(",")
    };
    Ok(move |table: Table| match table {
        Table::Sessions | Table::Attributes => format!("session_id IN ({list})"),
        Table::Users | Table::Preferences => {
            format!("user_id IN (SELECT user_id FROM user_sessions WHERE session_id IN ({list}))")
        }
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// A session the model gives, waiting for its Redis reply.
struct Expected {
    key: Bytes,
    fields: Vec<(Bytes, Bytes)>,
    expire_at: i64,
}

/// Expected index members of a user: must-have, and may-have (about to expire).
#[derive(Default)]
struct UserIndex {
    required: BTreeMap<Bytes, i64>,
    optional: BTreeMap<Bytes, i64>,
}

struct Checker<'a> {
    sink: &'a RedisSink,
    keys: &'a Keys,
    report: VerifyReport,
    /// When the source was read: what was live then may be in Redis.
    now: Timestamp,
    /// Sessions expiring before this are not judged; renewed before each
    /// read of Redis, as a whole verify outlasts many sessions.
    judge_after: Timestamp,
    grace_seconds: i64,
    pending: Vec<Expected>,
    /// Expected index of each user with a live session (judged or not).
    expected_users: BTreeMap<i64, UserIndex>,
}

impl Checker<'_> {
    async fn check_sessions(&mut self, state: &StateStore) -> Result<()> {
        let mut ids = Vec::new();
        state.for_each_index_entry(|user_id, session| {
            ids.push((user_id, session.session_id));
            Ok(())
        })?;
        for chunk in ids.chunks(SESSIONS_PER_FETCH) {
            self.judge_from_now();
            {
                let reader = StateReader::new(state);
                for (user_id, session_id) in chunk {
                    self.expect_session(&reader, *user_id, session_id)?;
                }
            }
            self.flush_sessions().await?;
        }
        Ok(())
    }

    fn expect_session(
        &mut self,
        state: &StateReader<'_>,
        user_id: i64,
        session_id: &[u8],
    ) -> Result<()> {
        let Some(session) = state.session(session_id)? else {
            return Ok(());
        };
        if !session.is_live(self.now) {
            return Ok(());
        }
        let score = session.expire_at_seconds().unwrap_or_default();
        let index = self.expected_users.entry(user_id).or_default();
        if !session.is_live(self.judge_after) {
            index.optional.insert(session_id.to_vec(), score);
            self.report.not_judged += 1;
            return Ok(());
        }
        index.required.insert(session_id.to_vec(), score);
        let user = state.user(user_id)?;
        let prefs = state.preferences(user_id)?;
        let attributes = state.attributes(session_id)?;
        self.pending.push(Expected {
            key: self.keys.session(session_id),
            fields: model::session_hash(&session, user.as_ref(), prefs.as_ref(), &attributes),
            expire_at: score,
        });
        Ok(())
    }

    async fn flush_sessions(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for e in &self.pending {
            pipe.cmd("HGETALL")
                .arg(&e.key)
                .cmd("EXPIRETIME")
                .arg(&e.key);
        }
        let replies: Vec<(Vec<(Bytes, Bytes)>, i64)> = self
            .query(&pipe, "reading session hashes")
            .await?
            .chunks(2)
            .map(|pair| {
                let hash = redis::from_redis_value(pair[0].clone()).unwrap_or_default();
                let at = redis::from_redis_value(pair[1].clone()).unwrap_or(-2);
                (hash, at)
            })
            .collect();
        for (expected, (found, found_at)) in
            std::mem::take(&mut self.pending).into_iter().zip(replies)
        {
            self.report.expected += 1;
            if !found.is_empty() {
                self.report.present += 1;
            }
            let diffs = compare::compare_session(
                &expected.key,
                &expected.fields,
                expected.expire_at,
                found,
                found_at,
            );
            self.report.record_session(diffs);
        }
        Ok(())
    }

    /// Sessions expiring within the grace period from now are not judged.
    fn judge_from_now(&mut self) {
        self.judge_after =
            Timestamp::from_micros(Timestamp::now().micros() + self.grace_seconds * 1_000_000);
    }

    async fn check_indexes(&mut self, _state: &StateStore) -> Result<()> {
        let users: Vec<i64> = self.expected_users.keys().copied().collect();
        for chunk in users.chunks(SESSIONS_PER_FETCH) {
            self.judge_from_now();
            let mut pipe = redis::pipe();
            for user_id in chunk {
                let key = self.keys.user_index(*user_id);
                pipe.cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES");
                pipe.cmd("EXPIRETIME").arg(&key);
            }
            let replies = self.query(&pipe, "reading user indexes").await?;
            for (user_id, pair) in chunk.iter().zip(replies.chunks(2)) {
                let found: Vec<(Bytes, i64)> =
                    redis::from_redis_value(pair[0].clone()).unwrap_or_default();
                let at: i64 = redis::from_redis_value(pair[1].clone()).unwrap_or(-2);
                let expected = &self.expected_users[user_id];
                let diffs = compare::compare_index(
                    &self.keys.user_index(*user_id),
                    &expected.required,
                    &expected.optional,
                    self.judge_after.ceil_seconds(),
                    found,
                    at,
                );
                self.report.record_index(diffs);
            }
        }
        Ok(())
    }

    /// Sample mode: each judged session is a member of its user's index with its score.
    async fn check_index_membership(&mut self) -> Result<()> {
        let mut checks = Vec::new();
        for (user_id, index) in &self.expected_users {
            for (member, score) in &index.required {
                checks.push((self.keys.user_index(*user_id), member.clone(), *score));
            }
        }
        for chunk in checks.chunks(SESSIONS_PER_FETCH) {
            let mut pipe = redis::pipe();
            for (key, member, _) in chunk {
                pipe.cmd("ZSCORE").arg(key).arg(member);
            }
            let replies = self.query(&pipe, "reading user indexes").await?;
            for ((key, member, score), reply) in chunk.iter().zip(replies) {
                let found: Option<f64> = redis::from_redis_value(reply).unwrap_or(None);
                let diffs = if found == Some(*score as f64) {
                    Vec::new()
                } else {
                    vec![Difference {
                        field: Some(compare::text(member)),
                        expected: Some(score.to_string()),
                        found: found.map(|f| f.to_string()),
                        ..Difference::new(key, DiffKind::Index)
                    }]
                };
                self.report.record_index(diffs);
            }
        }
        Ok(())
    }

    /// Keys of the namespace that the model does not give.
    async fn check_extra_keys(&mut self, state: &StateStore) -> Result<()> {
        let (sink, patterns) = (self.sink, self.keys.model_patterns());
        sink.scan_each(&patterns, async |found| {
            for key in found {
                if !self.may_exist(state, &key)? {
                    self.report
                        .record_extra(Difference::new(&key, DiffKind::Extra));
                }
            }
            Ok(ControlFlow::Continue(()))
        })
        .await
    }

    fn may_exist(&self, state: &StateStore, key: &[u8]) -> Result<bool> {
        if let Some(session_id) = self.keys.parse_session(key) {
            return Ok(state
                .session(session_id)?
                .is_some_and(|s| s.is_live(self.now)));
        }
        if let Some(user_id) = self.keys.parse_user_index(key) {
            return Ok(self.expected_users.contains_key(&user_id));
        }
        Ok(false)
    }

    async fn query(&self, pipe: &redis::Pipeline, what: &str) -> Result<Vec<redis::Value>> {
        let commands = pipe.cmd_iter().cloned().collect();
        self.sink.query(commands, what).await
    }
}
