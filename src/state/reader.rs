//! Reads of the state for one unit of work (a group of transactions, a pass
//! over the whole state), with one RocksDB iterator reused for every prefix
//! scan: creating an iterator costs far more than seeking one.

use std::cell::RefCell;

use rocksdb::DBRawIterator;

use super::{keys, StateStore};
use crate::error::Result;
use crate::model::{Attribute, Preferences, Session, SessionRef, StateView, User};

pub struct StateReader<'a> {
    store: &'a StateStore,
    iter: RefCell<DBRawIterator<'a>>,
}

impl<'a> StateReader<'a> {
    /// A reader of `store`. Its scans see the state as of now: create one
    /// per unit of work, not across writes.
    pub fn new(store: &'a StateStore) -> Self {
        StateReader {
            store,
            iter: RefCell::new(store.db.raw_iterator()),
        }
    }

    fn scan<T>(
        &self,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut iter = self.iter.borrow_mut();
        iter.seek(prefix);
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
            if !k.starts_with(prefix) {
                break;
            }
            out.push(f(k, v)?);
            iter.next();
        }
        iter.status().map_err(|e| self.store.err(e))?;
        Ok(out)
    }
}

impl StateView for StateReader<'_> {
    fn user(&self, user_id: i64) -> Result<Option<User>> {
        self.store.user(user_id)
    }

    fn preferences(&self, user_id: i64) -> Result<Option<Preferences>> {
        self.store.preferences(user_id)
    }

    fn session(&self, session_id: &[u8]) -> Result<Option<Session>> {
        self.store.session(session_id)
    }

    fn attributes(&self, session_id: &[u8]) -> Result<Vec<Attribute>> {
        self.scan(&keys::attributes_of(session_id), |_, v| {
            self.store.decode(v)
        })
    }

    fn sessions_of_user(&self, user_id: i64) -> Result<Vec<SessionRef>> {
        let prefix = keys::index_of(user_id);
        self.scan(&prefix, |k, v| {
            Ok(SessionRef {
                session_id: k[prefix.len()..].to_vec(),
                expires_at: keys::parse_index_value(v),
            })
        })
    }
}
