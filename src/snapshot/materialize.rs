//! Writing the model of the whole state to Redis, and removing what the
//! model no longer gives.

use std::ops::ControlFlow;

use tokio_util::sync::CancellationToken;

use super::hashes::{index_batches, Materialized, SessionHashes};
use super::pace::Pace;
use super::writer::{self, BatchWriter};
use crate::error::{Error, Result};
use crate::model::StateView;
use crate::model::{Bytes, Command, Keys, Timestamp};
use crate::sink::{RedisSink, Scope};
use crate::state::{StateReader, StateStore};

/// Writes every live session of the state, and every user's index, whose
/// key is in `scope`, to Redis, at the `pace`'s rate: the namespace (or the
/// part of it that Redis lost) rebuilt from the state alone.
pub async fn materialize(
    state: &StateStore,
    sink: &RedisSink,
    keys: &Keys,
    now: Timestamp,
    pace: &Pace,
    scope: &Scope,
    shutdown: &CancellationToken,
) -> Result<Materialized> {
    let writer = BatchWriter::spawn(sink, None, pace);
    let batch = pace.batch_commands();
    let producer = {
        let (state, keys, scope, shutdown, tx) = (
            state.clone(),
            keys.clone(),
            scope.clone(),
            shutdown.clone(),
            writer.sender(),
        );
        tokio::task::spawn_blocking(move || {
            model_batches(&state, &keys, now, batch, &scope, |batch| {
                if shutdown.is_cancelled() {
                    return Err(Error::Interrupted(
                        "snapshot stopped while writing Redis".into(),
                    ));
                }
                tx.blocking_send(batch).map_err(|_| writer::stopped())
            })
        })
    };
    let produced = producer
        .await
        .map_err(|e| Error::task("the snapshot's model encoder", e))
        .and_then(|r| r);
    writer.finish(produced).await
}

/// The model of the state within `scope` as batches of about
/// `batch_commands` commands, handed to `send` in order: every session's
/// hash (in order of session id), then every user's index.
pub fn model_batches(
    state: &StateStore,
    keys: &Keys,
    now: Timestamp,
    batch_commands: usize,
    scope: &Scope,
    mut send: impl FnMut(Vec<Command>) -> Result<()>,
) -> Result<Materialized> {
    let mut hashes = SessionHashes::new(state, keys, now);
    let mut batch = Vec::with_capacity(batch_commands + 8);
    state.for_each_session(|session| {
        if scope == &Scope::All || scope.holds(&keys.session(&session.session_id)) {
            hashes.write(&session, &mut batch)?;
        }
        if batch.len() >= batch_commands {
            send(std::mem::take(&mut batch))?;
        }
        Ok(())
    })?;
    if !batch.is_empty() {
        send(batch)?;
    }
    index_batches(state, keys, now, batch_commands, scope, send)?;
    Ok(hashes.done)
}

/// Deletes the namespace's keys in `scope` that the state's model does not
/// give: session hashes of sessions that are gone or expired, and indexes
/// of users with no live session, at the `pace`'s rate. Returns how many
/// keys it deleted.
pub async fn remove_stale(
    state: &StateStore,
    sink: &RedisSink,
    keys: &Keys,
    now: Timestamp,
    pace: &Pace,
    scope: &Scope,
) -> Result<u64> {
    let mut removed = 0;
    sink.scan_each(&keys.model_patterns(), async |mut found| {
        found.retain(|key| scope.holds(key));
        let stale: Vec<Command> = unexpected(state, keys, found, now)?
            .into_iter()
            .map(Command::Del)
            .collect();
        removed += stale.len() as u64;
        pace.admit(stale.len()).await;
        sink.write(&stale, false).await?;
        Ok(ControlFlow::Continue(()))
    })
    .await?;
    Ok(removed)
}

/// The keys of a SCAN page that the model of the state does not give.
fn unexpected(
    state: &StateStore,
    keys: &Keys,
    found: Vec<Bytes>,
    now: Timestamp,
) -> Result<Vec<Bytes>> {
    let reader = StateReader::new(state);
    let (sessions, others): (Vec<Bytes>, Vec<Bytes>) = found
        .into_iter()
        .partition(|k| keys.parse_session(k).is_some());
    let ids = sessions.iter().filter_map(|k| keys.parse_session(k));
    let mut stale = Vec::new();
    for (key, session) in sessions.iter().zip(state.sessions(ids)?) {
        if !session.is_some_and(|s| s.is_live(now)) {
            stale.push(key.clone());
        }
    }
    for key in others {
        let live = match keys.parse_user_index(&key) {
            Some(user_id) => reader
                .sessions_of_user(user_id)?
                .iter()
                .any(|r| r.is_live(now)),
            None => false,
        };
        if !live {
            stale.push(key);
        }
    }
    Ok(stale)
}
