//! A batch of row writes, applied to the state in one atomic write.

use rocksdb::WriteBatch;
use serde::Serialize;

use super::keys;
use crate::model::{Attribute, Pending, Preferences, Session, User, Write};

/// Row writes to apply to the state in one atomic write.
#[derive(Default)]
pub struct StateBatch {
    pub(super) batch: WriteBatch,
    /// Where each row is encoded before the batch copies it: one buffer
    /// for all of them, grown once.
    value: Vec<u8>,
}

impl StateBatch {
    /// The writes of a group's overlay.
    pub fn from_pending(pending: &Pending) -> Self {
        let mut b = StateBatch::default();
        for write in pending.writes() {
            match write {
                Write::User(_, Some(u)) => b.put_user(u),
                Write::User(user_id, None) => b.delete_user(user_id),
                Write::Preferences(_, Some(p)) => b.put_preferences(p),
                Write::Preferences(user_id, None) => b.delete_preferences(user_id),
                Write::Session(id, Some(s)) => b.put_row(keys::session(id), s),
                Write::Session(id, None) => b.batch.delete(keys::session(id)),
                Write::Attribute(_, _, Some(a)) => b.put_attribute(a),
                Write::Attribute(session_id, key, None) => b.delete_attribute(session_id, key),
                Write::Index(user_id, session_id, entry) => {
                    let key = keys::index(user_id, session_id);
                    match entry {
                        Some(r) => b.batch.put(key, keys::index_value(r.expires_at)),
                        None => b.batch.delete(key),
                    }
                }
                Write::Xa(xid, Some(changes)) => b.put_row(keys::xa(xid), &changes),
                Write::Xa(xid, None) => b.batch.delete(keys::xa(xid)),
            }
        }
        b
    }

    pub fn put_user(&mut self, user: &User) {
        self.put_row(keys::user(user.user_id), user);
    }

    pub fn delete_user(&mut self, user_id: i64) {
        self.batch.delete(keys::user(user_id));
    }

    pub fn put_preferences(&mut self, prefs: &Preferences) {
        self.put_row(keys::preferences(prefs.user_id), prefs);
    }

    pub fn delete_preferences(&mut self, user_id: i64) {
        self.batch.delete(keys::preferences(user_id));
    }

    /// Stores the session and its entry in its user's index. When the
    /// session was stored before under another user, the caller removes that
    /// entry with [`Self::delete_session`] first.
    pub fn put_session(&mut self, session: &Session) {
        self.put_row(keys::session(&session.session_id), session);
        self.batch.put(
            keys::index(session.user_id, &session.session_id),
            keys::index_value(session.expires_at),
        );
    }

    /// Removes the session row and its index entry (not its attributes).
    pub fn delete_session(&mut self, session: &Session) {
        self.batch.delete(keys::session(&session.session_id));
        self.batch
            .delete(keys::index(session.user_id, &session.session_id));
    }

    pub fn put_attribute(&mut self, attr: &Attribute) {
        self.put_row(keys::attribute(&attr.session_id, &attr.key), attr);
    }

    fn put_row<T: Serialize>(&mut self, key: Vec<u8>, row: &T) {
        let mut value = std::mem::take(&mut self.value);
        value.clear();
        self.value = postcard::to_extend(row, value).expect("rows of plain data always serialize");
        self.batch.put(key, &self.value);
    }

    pub fn delete_attribute(&mut self, session_id: &[u8], key: &[u8]) {
        self.batch.delete(keys::attribute(session_id, key));
    }

    /// Number of writes in the batch.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }
}
