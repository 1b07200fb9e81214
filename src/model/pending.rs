//! A group's write set: the rows its transactions wrote, not yet
//! committed to the state. The state store takes them through
//! [`Pending::writes`], the one way in.

use std::collections::BTreeMap;

use super::{Attribute, Bytes, Preferences, RowChange, Session, SessionRef, User};

/// Writes of a group of transactions not yet committed, read through before
/// the base. `None` marks a deleted row.
#[derive(Default, Debug, Clone)]
pub struct Pending {
    pub(super) users: BTreeMap<i64, Option<User>>,
    pub(super) preferences: BTreeMap<i64, Option<Preferences>>,
    pub(super) sessions: BTreeMap<Bytes, Option<Session>>,
    pub(super) attributes: BTreeMap<(Bytes, Bytes), Option<Attribute>>,
    /// (user id, session id) → its entry in the user → sessions index, or
    /// `None` when removed.
    pub(super) index: BTreeMap<(i64, Bytes), Option<SessionRef>>,
    /// Prepared XA transactions' row changes, or `None` once resolved.
    pub(super) xa: BTreeMap<String, Option<Vec<RowChange>>>,
}

impl Pending {
    /// Puts this layer's attributes of the session over `by_key`.
    pub(super) fn merge_attributes(
        &self,
        session_id: &[u8],
        by_key: &mut BTreeMap<Bytes, Attribute>,
    ) {
        let from = (session_id.to_vec(), Vec::new());
        for ((sid, key), row) in self.attributes.range(from..) {
            if sid != session_id {
                break;
            }
            match row {
                Some(attr) => by_key.insert(key.clone(), attr.clone()),
                None => by_key.remove(key),
            };
        }
    }

    /// This layer's entries of the user's index.
    pub(super) fn index_of(
        &self,
        user_id: i64,
    ) -> impl Iterator<Item = (&Bytes, &Option<SessionRef>)> {
        self.index
            .range((user_id, Vec::new())..)
            .take_while(move |((uid, _), _)| *uid == user_id)
            .map(|((_, sid), entry)| (sid, entry))
    }

    /// Puts this layer's index entries of the user over `refs`.
    pub(super) fn merge_index(&self, user_id: i64, refs: &mut BTreeMap<Bytes, SessionRef>) {
        for (sid, entry) in self.index_of(user_id) {
            match entry {
                Some(r) => refs.insert(sid.clone(), r.clone()),
                None => refs.remove(sid),
            };
        }
    }
}

/// One write of a group's write set; `None` deletes the row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Write<'a> {
    User(i64, Option<&'a User>),
    Preferences(i64, Option<&'a Preferences>),
    Session(&'a [u8], Option<&'a Session>),
    /// (session id, attribute key)
    Attribute(&'a [u8], &'a [u8], Option<&'a Attribute>),
    /// The user → sessions index entry (user id, session id).
    Index(i64, &'a [u8], Option<&'a SessionRef>),
    /// A prepared XA transaction's held row changes, by xid.
    Xa(&'a str, Option<&'a [RowChange]>),
}

impl Pending {
    /// Every write, table by table, each table in key order.
    pub fn writes(&self) -> impl Iterator<Item = Write<'_>> {
        let users = self
            .users
            .iter()
            .map(|(&id, r)| Write::User(id, r.as_ref()));
        let prefs = (self.preferences.iter()).map(|(&id, r)| Write::Preferences(id, r.as_ref()));
        let sessions = (self.sessions.iter()).map(|(id, r)| Write::Session(id, r.as_ref()));
        let attributes =
            (self.attributes.iter()).map(|((sid, key), r)| Write::Attribute(sid, key, r.as_ref()));
        let index = (self.index.iter()).map(|((uid, sid), r)| Write::Index(*uid, sid, r.as_ref()));
        let xa = (self.xa.iter()).map(|(xid, held)| Write::Xa(xid, held.as_deref()));
        users
            .chain(prefs)
            .chain(sessions)
            .chain(attributes)
            .chain(index)
            .chain(xa)
    }

    /// Number of writes.
    pub fn len(&self) -> usize {
        self.users.len()
            + self.preferences.len()
            + self.sessions.len()
            + self.attributes.len()
            + self.index.len()
            + self.xa.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
