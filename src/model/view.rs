//! A read view of the replicator's state, and an overlay of a group's
//! pending writes on top of it.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use super::{Attribute, Bytes, Preferences, Session, SessionRef, User};
use crate::error::Result;

/// Reads of the replicator's copy of the four tables.
pub trait StateView {
    fn user(&self, user_id: i64) -> Result<Option<User>>;
    fn preferences(&self, user_id: i64) -> Result<Option<Preferences>>;
    fn session(&self, session_id: &[u8]) -> Result<Option<Session>>;
    /// The session's attributes, ordered by key.
    fn attributes(&self, session_id: &[u8]) -> Result<Vec<Attribute>>;
    /// The sessions whose `user_id` is this user, live or not, ordered by id.
    fn sessions_of_user(&self, user_id: i64) -> Result<Vec<SessionRef>>;
}

/// Writes of a group of transactions not yet committed, read through before
/// the base. `None` marks a deleted row.
#[derive(Default, Debug)]
pub struct Pending {
    pub users: BTreeMap<i64, Option<User>>,
    pub preferences: BTreeMap<i64, Option<Preferences>>,
    pub sessions: BTreeMap<Bytes, Option<Session>>,
    pub attributes: BTreeMap<(Bytes, Bytes), Option<Attribute>>,
    /// (user id, session id) → its entry in the user → sessions index, or
    /// `None` when removed.
    pub index: BTreeMap<(i64, Bytes), Option<SessionRef>>,
}

/// The base state with a group's pending writes on top. Sessions read
/// from the base are kept for the group: a group reads the same few
/// sessions many times.
pub struct Overlay<'a, V> {
    base: &'a V,
    pub pending: Pending,
    sessions: RefCell<HashMap<Bytes, Option<Session>>>,
}

impl<'a, V: StateView> Overlay<'a, V> {
    pub fn new(base: &'a V) -> Self {
        Overlay {
            base,
            pending: Pending::default(),
            sessions: RefCell::default(),
        }
    }

    pub fn put_user(&mut self, user: User) {
        self.pending.users.insert(user.user_id, Some(user));
    }

    pub fn delete_user(&mut self, user_id: i64) {
        self.pending.users.insert(user_id, None);
    }

    pub fn put_preferences(&mut self, prefs: Preferences) {
        self.pending.preferences.insert(prefs.user_id, Some(prefs));
    }

    pub fn delete_preferences(&mut self, user_id: i64) {
        self.pending.preferences.insert(user_id, None);
    }

    /// Stores the session, moving its index entry when its user changed.
    pub fn put_session(&mut self, session: Session) -> Result<()> {
        if let Some(old) = self.session(&session.session_id)? {
            if old.user_id != session.user_id {
                self.pending
                    .index
                    .insert((old.user_id, old.session_id.clone()), None);
            }
        }
        self.pending.index.insert(
            (session.user_id, session.session_id.clone()),
            Some(SessionRef::from(&session)),
        );
        self.pending
            .sessions
            .insert(session.session_id.clone(), Some(session));
        Ok(())
    }

    /// Removes the session and its index entry (its attributes stay).
    pub fn delete_session(&mut self, session_id: &[u8]) -> Result<Option<Session>> {
        let old = self.session(session_id)?;
        if let Some(old) = &old {
            self.pending
                .index
                .insert((old.user_id, old.session_id.clone()), None);
        }
        self.pending.sessions.insert(session_id.to_vec(), None);
        Ok(old)
    }

    pub fn put_attribute(&mut self, attr: Attribute) {
        self.pending
            .attributes
            .insert((attr.session_id.clone(), attr.key.clone()), Some(attr));
    }

    pub fn delete_attribute(&mut self, session_id: &[u8], key: &[u8]) {
        self.pending
            .attributes
            .insert((session_id.to_vec(), key.to_vec()), None);
    }

    /// Number of pending row writes.
    pub fn len(&self) -> usize {
        let p = &self.pending;
        p.users.len() + p.preferences.len() + p.sessions.len() + p.attributes.len() + p.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<V: StateView> StateView for Overlay<'_, V> {
    fn user(&self, user_id: i64) -> Result<Option<User>> {
        match self.pending.users.get(&user_id) {
            Some(row) => Ok(row.clone()),
            None => self.base.user(user_id),
        }
    }

    fn preferences(&self, user_id: i64) -> Result<Option<Preferences>> {
        match self.pending.preferences.get(&user_id) {
            Some(row) => Ok(row.clone()),
            None => self.base.preferences(user_id),
        }
    }

    fn session(&self, session_id: &[u8]) -> Result<Option<Session>> {
        if let Some(row) = self.pending.sessions.get(session_id) {
            return Ok(row.clone());
        }
        if let Some(row) = self.sessions.borrow().get(session_id) {
            return Ok(row.clone());
        }
        let row = self.base.session(session_id)?;
        self.sessions
            .borrow_mut()
            .insert(session_id.to_vec(), row.clone());
        Ok(row)
    }

    fn attributes(&self, session_id: &[u8]) -> Result<Vec<Attribute>> {
        let mut by_key: BTreeMap<Bytes, Attribute> = self
            .base
            .attributes(session_id)?
            .into_iter()
            .map(|a| (a.key.clone(), a))
            .collect();
        let from = (session_id.to_vec(), Vec::new());
        for ((sid, key), row) in self.pending.attributes.range(from..) {
            if sid != session_id {
                break;
            }
            match row {
                Some(attr) => by_key.insert(key.clone(), attr.clone()),
                None => by_key.remove(key),
            };
        }
        Ok(by_key.into_values().collect())
    }

    fn sessions_of_user(&self, user_id: i64) -> Result<Vec<SessionRef>> {
        let mut refs: BTreeMap<Bytes, SessionRef> = self
            .base
            .sessions_of_user(user_id)?
            .into_iter()
            .map(|r| (r.session_id.clone(), r))
            .collect();
        for ((uid, sid), entry) in self.pending.index.range((user_id, Vec::new())..) {
            if *uid != user_id {
                break;
            }
            match entry {
                Some(r) => refs.insert(sid.clone(), r.clone()),
                None => refs.remove(sid),
            };
        }
        Ok(refs.into_values().collect())
    }
}
