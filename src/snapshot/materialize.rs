//! Writing the model of the whole state to Redis, and removing what the
//! model no longer gives.

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::model::StateView;
use crate::model::{self, Bytes, Command, Keys, Preferences, Timestamp, User};
use crate::sink::RedisSink;
use crate::state::{StateReader, StateStore};

/// Commands per pipeline (about 500 sessions).
const COMMANDS_PER_PIPELINE: usize = 1_500;
/// Pipelines in flight at once.
const PIPELINES_IN_FLIGHT: usize = 4;

/// What [`materialize`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Materialized {
    pub sessions: u64,
    pub expired: u64,
}

/// Writes every live session of the state, and every user's index, to
/// Redis. Each pipeline is one `MULTI`/`EXEC`, so a reader sees a session
/// either as before or as rewritten, never half-written.
pub async fn materialize(
    state: &StateStore,
    sink: &RedisSink,
    keys: &Keys,
    now: Timestamp,
    shutdown: &CancellationToken,
) -> Result<Materialized> {
    let (tx, rx) = mpsc::channel::<Vec<Command>>(PIPELINES_IN_FLIGHT * 2);
    let producer = {
        let (state, keys, shutdown) = (state.clone(), keys.clone(), shutdown.clone());
        tokio::task::spawn_blocking(move || {
            model_batches(&state, &keys, now, |batch| {
                if shutdown.is_cancelled() {
                    return Err(Error::Interrupted(
                        "snapshot stopped while writing Redis".into(),
                    ));
                }
                tx.blocking_send(batch)
                    .map_err(|_| Error::Interrupted("the Redis writer stopped".into()))
            })
        })
    };
    let mut writes = ReceiverStream::new(rx)
        .map(|batch| async move { sink.write(&batch, true).await })
        .buffer_unordered(PIPELINES_IN_FLIGHT);
    let mut failure = None;
    while let Some(result) = writes.next().await {
        if let Err(e) = result {
            failure.get_or_insert(e);
            break;
        }
    }
    drop(writes);
    let produced = producer
        .await
        .map_err(|e| Error::Interrupted(format!("snapshot writer stopped: {e}")))?;
    match failure {
        Some(e) => Err(e),
        None => produced,
    }
}

/// The whole model of the state as batches of commands (about 500 sessions
/// each, every user's index after its sessions), handed to `send` in order.
/// Walks the user → sessions index of the state, grouped by user.
pub fn model_batches(
    state: &StateStore,
    keys: &Keys,
    now: Timestamp,
    mut send: impl FnMut(Vec<Command>) -> Result<()>,
) -> Result<Materialized> {
    struct UserGroup {
        user_id: i64,
        user: Option<User>,
        prefs: Option<Preferences>,
        members: Vec<(i64, Bytes)>,
    }
    let mut done = Materialized::default();
    let mut batch = Vec::with_capacity(COMMANDS_PER_PIPELINE + 8);
    let mut group: Option<UserGroup> = None;
    let close_group = |group: UserGroup, batch: &mut Vec<Command>| {
        if !group.members.is_empty() {
            batch.extend(model::write_user_index(keys, group.user_id, group.members));
        }
    };

    let reader = StateReader::new(state);
    state.for_each_index_entry(|user_id, session_id| {
        if group.as_ref().is_none_or(|g| g.user_id != user_id) {
            if let Some(previous) = group.take() {
                close_group(previous, &mut batch);
            }
            group = Some(UserGroup {
                user_id,
                user: reader.user(user_id)?,
                prefs: reader.preferences(user_id)?,
                members: Vec::new(),
            });
        }
        let g = group.as_mut().expect("group was just set");
        let Some(session) = reader.session(session_id)? else {
            return Ok(());
        };
        let attributes = reader.attributes(session_id)?;
        match model::write_session(
            keys,
            now,
            &session,
            g.user.as_ref(),
            g.prefs.as_ref(),
            &attributes,
        ) {
            Some(commands) => {
                batch.extend(commands);
                let score = session.expire_at_seconds().unwrap_or_default();
                g.members.push((score, session.session_id));
                done.sessions += 1;
            }
            None => done.expired += 1,
        }
        if batch.len() >= COMMANDS_PER_PIPELINE {
            send(std::mem::take(&mut batch))?;
        }
        Ok(())
    })?;
    if let Some(last) = group.take() {
        close_group(last, &mut batch);
    }
    if !batch.is_empty() {
        send(batch)?;
    }
    Ok(done)
}

/// Deletes the namespace's keys that the state's model does not give:
/// session hashes of sessions that are gone or expired, and indexes of users
/// with no live session. Returns how many keys it deleted.
pub async fn remove_stale(
    state: &StateStore,
    sink: &RedisSink,
    keys: &Keys,
    now: Timestamp,
) -> Result<u64> {
    let mut removed = 0;
    for pattern in [keys.session_pattern(), keys.user_index_pattern()] {
        let mut cursor = 0;
        loop {
            let (next, found) = sink.scan_page(&pattern, cursor).await?;
            let stale: Vec<Command> = unexpected(state, keys, found, now)?
                .into_iter()
                .map(Command::Del)
                .collect();
            removed += stale.len() as u64;
            sink.write(&stale, false).await?;
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
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
