//! Reads of the state for one unit of work (a group of transactions, a pass
//! over the whole state), with one RocksDB iterator per table reused for
//! every prefix scan: creating an iterator costs far more than seeking one.
//!
//! Each iterator is bounded to its table's keys. A scan that finds nothing
//! under its prefix stops at the bound rather than walking on into the
//! next table, where a bulk delete (a purge of expired sessions, say) may
//! have left many thousands of deleted keys to step over.

use std::cell::RefCell;

use rocksdb::{DBRawIterator, ReadOptions};

use super::{keys, StateStore};
use crate::error::Result;
use crate::model::{Attribute, Preferences, Session, SessionRef, StateView, User};

pub struct StateReader<'a> {
    store: &'a StateStore,
    attributes: RefCell<DBRawIterator<'a>>,
    index: RefCell<DBRawIterator<'a>>,
}

impl<'a> StateReader<'a> {
    /// A reader of `store`. Its scans see the state as of now: create one
    /// per unit of work, not across writes.
    pub fn new(store: &'a StateStore) -> Self {
        let bounded = |table: &[u8]| {
            let mut options = ReadOptions::default();
            options.set_iterate_upper_bound(keys::table_end(table));
            RefCell::new(store.db.raw_iterator_opt(options))
        };
        StateReader {
            store,
            attributes: bounded(keys::ATTRIBUTES),
            index: bounded(keys::INDEX),
        }
    }

    fn scan<T>(
        &self,
        iter: &RefCell<DBRawIterator<'a>>,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut iter = iter.borrow_mut();
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
        self.scan(
            &self.attributes,
            &keys::attributes_of(session_id),
            |_, v| self.store.decode(v),
        )
    }

    fn sessions_of_user(&self, user_id: i64) -> Result<Vec<SessionRef>> {
        let prefix = keys::index_of(user_id);
        self.scan(&self.index, &prefix, |k, v| {
            Ok(SessionRef {
                session_id: k[prefix.len()..].to_vec(),
                expires_at: keys::parse_index_value(v),
            })
        })
    }
}

/// The attributes of sessions asked for in ascending order of their
/// attribute keys (length of the id, then the id: the order of sessions of
/// ids of one length), read in one forward pass instead of a seek each.
///
/// Sessions asked for in any other order are still answered correctly,
/// with a seek. The cursor sees the state as it was when it was created.
pub struct AttributeCursor<'a> {
    store: &'a StateStore,
    iter: DBRawIterator<'a>,
    /// The attribute-key prefix of the session asked for last: the iterator
    /// stands at the first key after all of its keys.
    last: Option<Vec<u8>>,
}

/// Keys a cursor steps over before it seeks instead.
const MAX_STEPS: usize = 16;

impl<'a> AttributeCursor<'a> {
    pub fn new(store: &'a StateStore) -> Self {
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(keys::table_end(keys::ATTRIBUTES));
        AttributeCursor {
            store,
            iter: store.db.raw_iterator_opt(options),
            last: None,
        }
    }

    /// The session's attributes, ordered by key.
    pub fn attributes(&mut self, session_id: &[u8]) -> Result<Vec<Attribute>> {
        let prefix = keys::attributes_of(session_id);
        if !self.reach(&prefix) {
            self.iter.seek(&prefix);
        }
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (self.iter.key(), self.iter.value()) {
            if !k.starts_with(&prefix) {
                break;
            }
            out.push(self.store.decode(v)?);
            self.iter.next();
        }
        self.iter.status().map_err(|e| self.store.err(e))?;
        self.last = Some(prefix);
        Ok(out)
    }

    /// Moves forward to the first key at or after `prefix`, when that is a
    /// few steps ahead. Every key between the last prefix's keys and
    /// `prefix` belongs to neither, so stepping over them skips nothing.
    fn reach(&mut self, prefix: &[u8]) -> bool {
        if self.last.as_deref().is_none_or(|last| last >= prefix) {
            return false;
        }
        for _ in 0..MAX_STEPS {
            match self.iter.key() {
                Some(k) if k < prefix => self.iter.next(),
                // At the bound, or at the first key not below `prefix`.
                _ => return self.iter.status().is_ok(),
            }
        }
        false
    }
}
