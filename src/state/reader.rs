//! Reads of the state for one unit of work (a group of transactions, a pass
//! over the whole state), with one RocksDB iterator per table reused for
//! every prefix scan: creating an iterator costs far more than seeking one,
//! and a seek costs far more than a few steps forward. Prefixes asked for
//! in ascending order (a bulk update of users in id order, a snapshot's
//! sessions in id order: one forward pass over the attributes) are reached
//! by stepping; any other is sought.
//!
//! Each iterator is bounded to its table's keys. A scan that finds nothing
//! under its prefix stops at the bound rather than walking on into the
//! next table, where a bulk delete (a purge of expired sessions, say) may
//! have left many thousands of deleted keys to step over.

use std::cell::RefCell;

use rocksdb::{DBRawIterator, ReadOptions};

use super::{keys, StateStore};
use crate::error::Result;
use crate::model::{
    Attribute, Preferences, RowChange, Session, SessionRef, SourceRow, StateView, Table, User, Xid,
};

/// Keys a scan steps over before it seeks instead.
const MAX_STEPS: usize = 16;

/// An iterator over one table, and where the last prefix scan left it.
struct Scanner<'a> {
    store: &'a StateStore,
    iter: DBRawIterator<'a>,
    /// The prefix scanned last: the iterator stands at the first key after
    /// all of its keys.
    last: Option<Vec<u8>>,
}

impl<'a> Scanner<'a> {
    /// Bounded to the keys of `table`.
    fn new(store: &'a StateStore, table: &[u8]) -> Self {
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(keys::table_end(table));
        Scanner {
            store,
            iter: store.db.raw_iterator_opt(options),
            last: None,
        }
    }

    /// `f` of every key and value under `prefix`, in key order.
    fn scan<T>(
        &mut self,
        prefix: Vec<u8>,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<T>,
    ) -> Result<Vec<T>> {
        if !self.reach(&prefix) {
            self.iter.seek(&prefix);
        }
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (self.iter.key(), self.iter.value()) {
            if !k.starts_with(&prefix) {
                break;
            }
            out.push(f(k, v)?);
            self.iter.next();
        }
        self.iter.status().map_err(|e| self.store.err(e))?;
        self.last = Some(prefix);
        Ok(out)
    }

    /// Moves forward to the first key at or after `prefix`, when that is a
    /// few steps ahead. Every key between the last prefix's keys and
    /// `prefix` belongs to neither, so stepping over them skips nothing.
    /// (No prefix of a table is a prefix of another of the same table.)
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

pub struct StateReader<'a> {
    store: &'a StateStore,
    attributes: RefCell<Scanner<'a>>,
    index: RefCell<Scanner<'a>>,
}

impl<'a> StateReader<'a> {
    /// A reader of `store`. Its scans see the state as of now: create one
    /// per unit of work, not across writes.
    pub fn new(store: &'a StateStore) -> Self {
        StateReader {
            store,
            attributes: RefCell::new(Scanner::new(store, keys::ATTRIBUTES)),
            index: RefCell::new(Scanner::new(store, keys::INDEX)),
        }
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

    fn sessions(&self, session_ids: &[&[u8]]) -> Result<Vec<Option<Session>>> {
        self.store.sessions(session_ids.iter().copied())
    }

    fn attributes(&self, session_id: &[u8]) -> Result<Vec<Attribute>> {
        self.attributes
            .borrow_mut()
            .scan(keys::attributes_of(session_id), |_, v| self.store.decode(v))
    }

    fn sessions_of_user(&self, user_id: i64) -> Result<Vec<SessionRef>> {
        let prefix = keys::index_of(user_id);
        let skip = prefix.len();
        self.index.borrow_mut().scan(prefix, |k, v| {
            Ok(SessionRef {
                session_id: k[skip..].to_vec(),
                expires_at: keys::parse_index_value(v),
            })
        })
    }

    fn rows_of(&self, table: Table) -> Result<Vec<SourceRow>> {
        self.store.rows_of(table)
    }

    fn held_xa(&self, xid: &Xid) -> Result<Option<Vec<RowChange>>> {
        self.store.held_xa(xid)
    }
}
