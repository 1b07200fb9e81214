//! The model of whole sessions and indexes, built from the state: what a
//! snapshot and a rebuild of the namespace write.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use crate::error::Result;
use crate::model::{self, Bytes, Command, Keys, Preferences, Session, StateView, Timestamp, User};
use crate::sink::Scope;
use crate::state::{StateReader, StateStore};

/// What was written: live sessions, and expired ones left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Materialized {
    pub sessions: u64,
    pub expired: u64,
}

/// Builds the hash of each session it is given, with the session's
/// attributes and owner read from the state. Sessions given in ascending
/// order of id cost one forward pass over the attributes (the reader steps
/// from one session's attributes to the next instead of seeking).
pub struct SessionHashes<'a> {
    keys: &'a Keys,
    now: Timestamp,
    reader: StateReader<'a>,
    owners: Owners<'a>,
    pub done: Materialized,
}

impl<'a> SessionHashes<'a> {
    /// Reads attributes as the state holds them now: create it once they
    /// are all loaded.
    pub fn new(state: &'a StateStore, keys: &'a Keys, now: Timestamp) -> Self {
        SessionHashes {
            keys,
            now,
            reader: StateReader::new(state),
            owners: Owners::new(state),
            done: Materialized::default(),
        }
    }

    /// Appends the commands that write the session's hash, if it is live.
    pub fn write(&mut self, session: &Session, out: &mut Vec<Command>) -> Result<()> {
        if !session.is_live(self.now) {
            self.done.expired += 1;
            return Ok(());
        }
        let attributes = self.reader.attributes(&session.session_id)?;
        let (user, prefs) = self.owners.get(session.user_id)?;
        let commands = model::write_session(
            self.keys,
            self.now,
            session,
            user.as_ref(),
            prefs.as_ref(),
            &attributes,
        );
        match commands {
            Some(commands) => {
                out.extend(commands);
                self.done.sessions += 1;
            }
            None => self.done.expired += 1,
        }
        Ok(())
    }
}

/// Users kept in memory while building sessions; past this many the cache
/// starts again empty, so memory stays bounded whatever the table size.
const OWNERS_CACHED: usize = 200_000;

/// A user and their preferences, read from the state once for all their
/// sessions while the memory bound allows.
struct Owners<'a> {
    state: &'a StateStore,
    cache: HashMap<i64, (Option<User>, Option<Preferences>)>,
}

impl<'a> Owners<'a> {
    fn new(state: &'a StateStore) -> Self {
        Owners {
            state,
            cache: HashMap::new(),
        }
    }

    fn get(&mut self, user_id: i64) -> Result<&(Option<User>, Option<Preferences>)> {
        if self.cache.len() >= OWNERS_CACHED && !self.cache.contains_key(&user_id) {
            self.cache.clear();
        }
        Ok(match self.cache.entry(user_id) {
            Entry::Occupied(cached) => cached.into_mut(),
            Entry::Vacant(slot) => {
                slot.insert((self.state.user(user_id)?, self.state.preferences(user_id)?))
            }
        })
    }
}

/// Every user's index whose key is in `scope`, from the state's user →
/// sessions index: the commands in batches of about `commands_per_batch`,
/// handed to `send`.
pub fn index_batches(
    state: &StateStore,
    keys: &Keys,
    now: Timestamp,
    commands_per_batch: usize,
    scope: &Scope,
    mut send: impl FnMut(Vec<Command>) -> Result<()>,
) -> Result<()> {
    let mut batch = Vec::new();
    let mut user: Option<(i64, Vec<(i64, Bytes)>)> = None;
    let close = |(user_id, members): (i64, Vec<(i64, Bytes)>), batch: &mut Vec<Command>| {
        let wanted = scope == &Scope::All || scope.holds(&keys.user_index(user_id));
        if !members.is_empty() && wanted {
            batch.extend(model::write_user_index(keys, user_id, members));
        }
    };
    state.for_each_index_entry(|user_id, session| {
        if user.as_ref().is_none_or(|(id, _)| *id != user_id) {
            if let Some(previous) = user.replace((user_id, Vec::new())) {
                close(previous, &mut batch);
                if batch.len() >= commands_per_batch {
                    send(std::mem::take(&mut batch))?;
                }
            }
        }
        if session.is_live(now) {
            if let (Some((_, members)), Some(score)) = (user.as_mut(), session.expire_at_seconds())
            {
                members.push((score, session.session_id));
            }
        }
        Ok(())
    })?;
    if let Some(last) = user.take() {
        close(last, &mut batch);
    }
    if !batch.is_empty() {
        send(batch)?;
    }
    Ok(())
}
