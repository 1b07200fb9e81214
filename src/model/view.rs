//! A read view of the replicator's state, and an overlay of a group's
//! pending writes on top of it.

use std::cell::RefCell;
use std::collections::BTreeMap;

use hashbrown::HashMap;

use super::pending::Pending;
use super::{
    Attribute, Bytes, Preferences, RowChange, Session, SessionRef, SourceRow, Table, User, Xid,
};
use crate::error::Result;

/// Reads of the replicator's copy of the four tables.
pub trait StateView {
    fn user(&self, user_id: i64) -> Result<Option<User>>;
    fn preferences(&self, user_id: i64) -> Result<Option<Preferences>>;
    fn session(&self, session_id: &[u8]) -> Result<Option<Session>>;
    /// Several sessions, in the order asked: a store may read them in one
    /// batch, for less than a read each.
    fn sessions(&self, session_ids: &[&[u8]]) -> Result<Vec<Option<Session>>> {
        session_ids.iter().map(|id| self.session(id)).collect()
    }
    /// The session's attributes, ordered by key.
    fn attributes(&self, session_id: &[u8]) -> Result<Vec<Attribute>>;
    /// The sessions whose `user_id` is this user, live or not, ordered by id.
    fn sessions_of_user(&self, user_id: i64) -> Result<Vec<SessionRef>>;
    /// Every row of one table (for a `TRUNCATE`), in key order.
    fn rows_of(&self, table: Table) -> Result<Vec<SourceRow>>;
    /// The row changes of a prepared XA transaction, held until its
    /// `XA COMMIT` or `XA ROLLBACK`.
    fn held_xa(&self, xid: &Xid) -> Result<Option<Vec<RowChange>>>;
}

/// The base state with a group's pending writes on top, and between them,
/// read-only, those of the group before it when that one is still in
/// flight (written to Redis, not yet committed to the base). Sessions and
/// users' index entries read from the base are kept for the group: a group
/// reads the same few many times (a user's row and preferences changed
/// together, say).
pub struct Overlay<'a, V> {
    base: &'a V,
    below: Option<&'a Pending>,
    pub pending: Pending,
    sessions: RefCell<HashMap<Bytes, Option<Session>>>,
    index: RefCell<HashMap<i64, Vec<SessionRef>>>,
}

impl<'a, V: StateView> Overlay<'a, V> {
    pub fn new(base: &'a V) -> Self {
        Self::over(base, None)
    }

    /// An overlay of `base` with `below` (the group in flight) under it.
    pub fn over(base: &'a V, below: Option<&'a Pending>) -> Self {
        Overlay {
            base,
            below,
            pending: Pending::default(),
            sessions: RefCell::default(),
            index: RefCell::default(),
        }
    }

    /// Reads from the base, in one batch, those of these sessions that no
    /// layer holds and that are not read yet; later reads find them here.
    pub fn prefetch_sessions<'k>(
        &self,
        session_ids: impl IntoIterator<Item = &'k [u8]>,
    ) -> Result<()> {
        let mut wanted: Vec<&[u8]> = {
            let cached = self.sessions.borrow();
            let layered = |id: &[u8]| {
                let mut layers = self.below.into_iter().chain([&self.pending]);
                layers.any(|p| p.sessions.contains_key(id))
            };
            session_ids
                .into_iter()
                .filter(|id| !cached.contains_key(*id) && !layered(id))
                .collect()
        };
        wanted.sort_unstable();
        wanted.dedup();
        let rows = self.base.sessions(&wanted)?;
        let mut cached = self.sessions.borrow_mut();
        for (id, row) in wanted.into_iter().zip(rows) {
            cached.insert(id.to_vec(), row);
        }
        Ok(())
    }

    /// The row as the layers have it, top first; `None` when neither wrote it.
    fn layered<T: Clone>(&self, row: impl Fn(&Pending) -> Option<&Option<T>>) -> Option<Option<T>> {
        row(&self.pending)
            .or_else(|| self.below.and_then(&row))
            .cloned()
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
    /// `old`: the row it replaces, if any. The index entry (the session's
    /// expiry) is written only when it changes: most updates of a session
    /// (its last activity, say) leave it as it is.
    pub fn put_session(&mut self, session: Session, old: Option<&Session>) {
        let index_changes = match old {
            Some(old) if old.user_id != session.user_id => {
                self.pending
                    .index
                    .insert((old.user_id, old.session_id.clone()), None);
                true
            }
            Some(old) => old.expires_at != session.expires_at,
            None => true,
        };
        if index_changes {
            self.pending.index.insert(
                (session.user_id, session.session_id.clone()),
                Some(SessionRef::from(&session)),
            );
        }
        self.pending
            .sessions
            .insert(session.session_id.clone(), Some(session));
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

    /// Holds a prepared XA transaction's row changes.
    pub fn hold_xa(&mut self, xid: &Xid, changes: Vec<RowChange>) {
        self.pending.xa.insert(xid.0.clone(), Some(changes));
    }

    /// Forgets a prepared XA transaction (committed or rolled back).
    pub fn release_xa(&mut self, xid: &Xid) {
        self.pending.xa.insert(xid.0.clone(), None);
    }

    /// Number of pending row writes.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The base's rows of one table with each layer's writes laid on top.
fn merged<K: Ord, T>(
    base: Vec<T>,
    key: impl Fn(&T) -> K,
    layers: impl Iterator<Item = Vec<(K, Option<T>)>>,
) -> Vec<T> {
    let mut rows: BTreeMap<K, T> = base.into_iter().map(|row| (key(&row), row)).collect();
    for layer in layers {
        for (k, row) in layer {
            match row {
                Some(row) => rows.insert(k, row),
                None => rows.remove(&k),
            };
        }
    }
    rows.into_values().collect()
}

impl<V: StateView> StateView for Overlay<'_, V> {
    fn user(&self, user_id: i64) -> Result<Option<User>> {
        match self.layered(|p| p.users.get(&user_id)) {
            Some(row) => Ok(row),
            None => self.base.user(user_id),
        }
    }

    fn preferences(&self, user_id: i64) -> Result<Option<Preferences>> {
        match self.layered(|p| p.preferences.get(&user_id)) {
            Some(row) => Ok(row),
            None => self.base.preferences(user_id),
        }
    }

    fn session(&self, session_id: &[u8]) -> Result<Option<Session>> {
        if let Some(row) = self.layered(|p| p.sessions.get(session_id)) {
            return Ok(row);
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
        for layer in self.below.into_iter().chain([&self.pending]) {
            layer.merge_attributes(session_id, &mut by_key);
        }
        Ok(by_key.into_values().collect())
    }

    fn sessions_of_user(&self, user_id: i64) -> Result<Vec<SessionRef>> {
        let cached = self.index.borrow().get(&user_id).cloned();
        let base = match cached {
            Some(refs) => refs,
            None => {
                let refs = self.base.sessions_of_user(user_id)?;
                self.index.borrow_mut().insert(user_id, refs.clone());
                refs
            }
        };
        let layers = || self.below.into_iter().chain([&self.pending]);
        // Most users a group reads, it has not written: the base as it is.
        if layers().all(|layer| layer.index_of(user_id).next().is_none()) {
            return Ok(base);
        }
        let mut refs: BTreeMap<Bytes, SessionRef> = base
            .into_iter()
            .map(|r| (r.session_id.clone(), r))
            .collect();
        for layer in layers() {
            layer.merge_index(user_id, &mut refs);
        }
        Ok(refs.into_values().collect())
    }

    fn rows_of(&self, table: Table) -> Result<Vec<SourceRow>> {
        let base = self.base.rows_of(table)?;
        let layers = || self.below.into_iter().chain([&self.pending]);
        macro_rules! merge {
            ($variant:ident, $field:ident, $key:expr) => {{
                let rows = base.into_iter().filter_map(|r| match r {
                    SourceRow::$variant(row) => Some(row),
                    _ => None,
                });
                let layered = layers().map(|p| {
                    p.$field
                        .iter()
                        .map(|(k, row)| (k.clone(), row.clone()))
                        .collect::<Vec<_>>()
                });
                merged(rows.collect(), $key, layered)
                    .into_iter()
                    .map(SourceRow::$variant)
                    .collect()
            }};
        }
        Ok(match table {
            Table::Users => merge!(User, users, |u: &User| u.user_id),
            Table::Preferences => merge!(Preferences, preferences, |p: &Preferences| p.user_id),
            Table::Sessions => merge!(Session, sessions, |s: &Session| s.session_id.clone()),
            Table::Attributes => merge!(Attribute, attributes, |a: &Attribute| (
                a.session_id.clone(),
                a.key.clone()
            )),
        })
    }

    fn held_xa(&self, xid: &Xid) -> Result<Option<Vec<RowChange>>> {
        match self.layered(|p| p.xa.get(&xid.0)) {
            Some(held) => Ok(held),
            None => self.base.held_xa(xid),
        }
    }
}
