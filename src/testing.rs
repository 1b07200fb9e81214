//! Stand-ins for the unit tests and benchmarks of the pure parts: an
//! in-memory state that keeps what the RocksDB state keeps, read through
//! the same [`StateView`]. Built for the crate's own tests, and behind the
//! `testing` feature for its benchmarks; never in what ships.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::model::{
    Attribute, Bytes, Pending, Preferences, RowChange, Session, SessionRef, SourceRow, StateView,
    Table, User, Write, Xid,
};

/// The replicator's state, in memory.
#[derive(Default, Clone, Debug, PartialEq)]
pub struct MemState {
    pub users: BTreeMap<i64, User>,
    pub preferences: BTreeMap<i64, Preferences>,
    pub sessions: BTreeMap<Bytes, Session>,
    /// By (session id, attribute key).
    pub attributes: BTreeMap<(Bytes, Bytes), Attribute>,
    /// The user → sessions index, by (user id, session id). As the store
    /// keeps it: each entry is written by the changes, not derived here
    /// from the session rows, so a stale entry shows.
    pub index: BTreeMap<(i64, Bytes), SessionRef>,
    /// Prepared XA transactions' row changes, by xid.
    pub xa: BTreeMap<String, Vec<RowChange>>,
}

impl MemState {
    /// Adds a row as a snapshot loads it (a session with its index entry).
    pub fn insert(&mut self, row: SourceRow) {
        match row {
            SourceRow::User(u) => {
                self.users.insert(u.user_id, u);
            }
            SourceRow::Preferences(p) => {
                self.preferences.insert(p.user_id, p);
            }
            SourceRow::Session(s) => {
                let key = (s.user_id, s.session_id.clone());
                self.index.insert(key, SessionRef::from(&s));
                self.sessions.insert(s.session_id.clone(), s);
            }
            SourceRow::Attribute(a) => {
                self.attributes
                    .insert((a.session_id.clone(), a.key.clone()), a);
            }
        }
    }

    /// Commits a group's write set, as the store does.
    pub fn commit(&mut self, pending: &Pending) {
        fn put<K: Ord, T: Clone>(map: &mut BTreeMap<K, T>, key: K, row: Option<&T>) {
            match row {
                Some(row) => map.insert(key, row.clone()),
                None => map.remove(&key),
            };
        }
        for write in pending.writes() {
            match write {
                Write::User(id, row) => put(&mut self.users, id, row),
                Write::Preferences(id, row) => put(&mut self.preferences, id, row),
                Write::Session(id, row) => put(&mut self.sessions, id.to_vec(), row),
                Write::Attribute(sid, key, row) => {
                    put(&mut self.attributes, (sid.to_vec(), key.to_vec()), row)
                }
                Write::Index(uid, sid, entry) => put(&mut self.index, (uid, sid.to_vec()), entry),
                Write::Xa(xid, held) => put(
                    &mut self.xa,
                    xid.to_string(),
                    held.map(<[_]>::to_vec).as_ref(),
                ),
            }
        }
    }
}

impl StateView for MemState {
    fn user(&self, id: i64) -> Result<Option<User>> {
        Ok(self.users.get(&id).cloned())
    }

    fn preferences(&self, id: i64) -> Result<Option<Preferences>> {
        Ok(self.preferences.get(&id).cloned())
    }

    fn session(&self, id: &[u8]) -> Result<Option<Session>> {
        Ok(self.sessions.get(id).cloned())
    }

    fn attributes(&self, id: &[u8]) -> Result<Vec<Attribute>> {
        let from = (id.to_vec(), Vec::new());
        Ok(self
            .attributes
            .range(from..)
            .take_while(|((sid, _), _)| sid == id)
            .map(|(_, a)| a.clone())
            .collect())
    }

    fn sessions_of_user(&self, id: i64) -> Result<Vec<SessionRef>> {
        Ok(self
            .index
            .range((id, Vec::new())..)
            .take_while(|((uid, _), _)| *uid == id)
            .map(|(_, entry)| entry.clone())
            .collect())
    }

    fn rows_of(&self, table: Table) -> Result<Vec<SourceRow>> {
        Ok(match table {
            Table::Users => self.users.values().cloned().map(SourceRow::User).collect(),
            Table::Preferences => (self.preferences.values().cloned())
                .map(SourceRow::Preferences)
                .collect(),
            Table::Sessions => (self.sessions.values().cloned())
                .map(SourceRow::Session)
                .collect(),
            Table::Attributes => (self.attributes.values().cloned())
                .map(SourceRow::Attribute)
                .collect(),
        })
    }

    fn held_xa(&self, xid: &Xid) -> Result<Option<Vec<RowChange>>> {
        Ok(self.xa.get(&xid.0).cloned())
    }
}
