//! Row change + state → Redis commands + state writes. Pure: the state is
//! read through [`StateView`] and written to the group's [`Overlay`].
//!
//! Rules (see `docs/redis-model.md`):
//! - a `users` or `user_preferences` change rewrites the affected fields in
//!   every live session of the user (`HSET`/`HDEL` + `EXPIREAT`): those whose
//!   values differ from the row before the change, which the event carries,
//!   so a change of columns the model does not keep (`last_login_at`, say)
//!   writes nothing;
//! - a `session_data` change sets or removes one `attr_*` field of a live
//!   session, and creates nothing for an expired or unknown one;
//! - a `user_sessions` change that only touches plain columns updates those
//!   fields (compared, too, with the row before the change that the event
//!   carries); one that changes liveness, expiry or user rewrites the whole
//!   hash from the state (so an expired session extended into the future
//!   comes back complete, attributes included); one to a session that was
//!   and stays expired only deletes its key (a hash Redis has not expired
//!   yet), and leaves the user's index alone;
//! - deletes cascade as MySQL does, although MySQL logs no row events for
//!   cascaded deletes: a user takes their preferences, sessions and
//!   attributes; a session takes its attributes. A delete written with
//!   `FOREIGN_KEY_CHECKS=0` ([`RowChange::Remove`]) and `TRUNCATE` do not
//!   cascade: dependent rows stay, as orphans, and follow the field rules
//!   (a session whose user row is missing has no user fields);
//! - an update of a session that the state does not have is written whole,
//!   from the after-image and the state, never as a partial hash;
//! - an XA transaction's rows are held from its `XA PREPARE` (in the state,
//!   so they survive a restart) and applied at its `XA COMMIT`;
//! - every user index touched in a group is rewritten once, at the end of
//!   the group, from the state.
//!
//! Every command that can create a session hash is followed by its
//! `EXPIREAT`, so no hash lives without a TTL, even one Redis expired a
//! moment before the write arrived.

use std::collections::BTreeSet;

use super::session::{
    preference_fields, session_fields, user_fields, write_session, write_user_index, Field,
};
use super::{
    attribute_field, coalesce, Attribute, Command, Keys, Overlay, Preferences, RowChange, Session,
    SessionRef, SourceRow, StateView, Timestamp, User,
};
use crate::error::Result;

mod content;
mod fields;

use fields::{changed, FieldWrites};

pub use content::apply_content;

/// The Redis commands of a group of changes, in order.
#[derive(Debug, Default)]
pub struct GroupOutput {
    pub commands: Vec<Command>,
    /// Row changes applied.
    pub rows: u64,
    /// Users whose index is rewritten when the group ends.
    dirty_users: BTreeSet<i64>,
}

/// Applies one row change to the overlay and appends its Redis commands.
pub fn apply<V: StateView>(
    change: RowChange,
    view: &mut Overlay<'_, V>,
    keys: &Keys,
    now: Timestamp,
    out: &mut GroupOutput,
) -> Result<()> {
    out.rows += 1;
    let mut ctx = Ctx {
        view,
        keys,
        now,
        out,
    };
    match change {
        RowChange::Insert(row) => ctx.upsert(row, None),
        RowChange::Update { before, after } => ctx.upsert(after, Some(before)),
        RowChange::Delete(row) => ctx.delete(row),
        RowChange::Remove(row) => ctx.vacate(row),
    }
}

/// Reads in one batch the sessions that these changes' `session_data` rows
/// belong to: each such change looks its session up (is it live, when does
/// it expire?), and one batched read costs far less than one read each.
/// Only a matter of speed: [`apply`] reads whatever was not prefetched.
pub fn prefetch<'k, V: StateView>(
    changes: impl IntoIterator<Item = &'k RowChange>,
    view: &Overlay<'_, V>,
) -> Result<()> {
    let attribute = |row: &'k SourceRow| match row {
        SourceRow::Attribute(a) => Some(&a.session_id[..]),
        _ => None,
    };
    view.prefetch_sessions(changes.into_iter().flat_map(|change| {
        let (first, second) = match change {
            RowChange::Insert(row) | RowChange::Delete(row) | RowChange::Remove(row) => (row, None),
            RowChange::Update { before, after } => (after, Some(before)),
        };
        // An updated session is read too: whether the state has it.
        let updated_session = match (change, first) {
            (RowChange::Update { .. }, SourceRow::Session(s)) => Some(&s.session_id[..]),
            _ => None,
        };
        attribute(first)
            .into_iter()
            .chain(second.and_then(attribute))
            .chain(updated_session)
    }))
}

/// Ends a group: rewrites the index of every user it touched, and merges
/// the group's commands per key (see [`coalesce`]).
pub fn finish_group<V: StateView>(
    view: &Overlay<'_, V>,
    keys: &Keys,
    now: Timestamp,
    out: &mut GroupOutput,
) -> Result<()> {
    for user_id in std::mem::take(&mut out.dirty_users) {
        // The index knows each session's expiry: no session is read.
        let members = view
            .sessions_of_user(user_id)?
            .into_iter()
            .filter(|r| r.is_live(now))
            .map(|r| (r.expire_at_seconds().unwrap_or_default(), r.session_id))
            .collect();
        out.commands
            .extend(write_user_index(keys, user_id, members));
    }
    out.commands = coalesce(std::mem::take(&mut out.commands));
    Ok(())
}

struct Ctx<'c, 'a, V> {
    view: &'c mut Overlay<'a, V>,
    keys: &'c Keys,
    now: Timestamp,
    out: &'c mut GroupOutput,
}

impl<V: StateView> Ctx<'_, '_, V> {
    /// `before`: the row before the change, as the event carries it. An
    /// update that changes the primary key first removes the row under the
    /// old key; then `row` is written as new.
    fn upsert(&mut self, row: SourceRow, before: Option<SourceRow>) -> Result<()> {
        let old = match before {
            Some(before) if before.same_row(&row) => Some(before),
            Some(before) => {
                self.vacate(before)?;
                None
            }
            None => None,
        };
        match (row, old) {
            (SourceRow::User(u), Some(SourceRow::User(b))) => self.upsert_user(u, Some(&b)),
            (SourceRow::User(u), _) => self.upsert_user(u, None),
            (SourceRow::Preferences(p), Some(SourceRow::Preferences(b))) => {
                self.upsert_preferences(p, Some(&b))
            }
            (SourceRow::Preferences(p), _) => self.upsert_preferences(p, None),
            (SourceRow::Session(s), Some(SourceRow::Session(b))) => self.upsert_session(s, Some(b)),
            (SourceRow::Session(s), _) => self.upsert_session(s, None),
            (SourceRow::Attribute(a), _) => self.upsert_attribute(a),
        }
    }

    /// The row under a primary key that an update changed is gone, without
    /// MySQL's cascade (its dependent rows keep the old key): a user's
    /// sessions lose its fields, a session's attributes stay where MySQL
    /// keeps them.
    fn vacate(&mut self, row: SourceRow) -> Result<()> {
        match row {
            SourceRow::User(u) => self.unset_user(u.user_id),
            SourceRow::Preferences(p) => self.delete_preferences(p.user_id),
            SourceRow::Session(s) => self.remove_session(&s.session_id),
            SourceRow::Attribute(a) => self.delete_attribute(&a),
        }
    }

    fn delete(&mut self, row: SourceRow) -> Result<()> {
        match row {
            SourceRow::User(u) => self.delete_user(u.user_id),
            SourceRow::Preferences(p) => self.delete_preferences(p.user_id),
            SourceRow::Session(s) => self.delete_session(&s.session_id),
            SourceRow::Attribute(a) => self.delete_attribute(&a),
        }
    }

    // ---- users

    /// Writes the fields that differ from `old`, the row before the change
    /// as the event carries it (none, when only `password_hash` or
    /// `last_login_at` changed), to the user's live sessions. Nothing is
    /// read for it: the state holds that same row.
    fn upsert_user(&mut self, user: User, old: Option<&User>) -> Result<()> {
        let fields = changed(user_fields(Some(&user)), user_fields(old));
        let user_id = user.user_id;
        self.view.put_user(user);
        self.set_fields_of_live_sessions(user_id, &fields)
    }

    /// The user row is gone but its sessions are not (a changed user id).
    fn unset_user(&mut self, user_id: i64) -> Result<()> {
        self.view.delete_user(user_id);
        self.set_fields_of_live_sessions(user_id, &user_fields(None))
    }

    fn delete_user(&mut self, user_id: i64) -> Result<()> {
        self.view.delete_user(user_id);
        self.view.delete_preferences(user_id);
        for session in self.view.sessions_of_user(user_id)? {
            self.delete_session(&session.session_id)?;
        }
        self.out.dirty_users.insert(user_id);
        Ok(())
    }

    // ---- preferences

    /// Writes the fields that differ from `old`, the row before the change
    /// (none, when only `updated_at` changed), to the user's live sessions.
    fn upsert_preferences(&mut self, prefs: Preferences, old: Option<&Preferences>) -> Result<()> {
        let fields = changed(preference_fields(Some(&prefs)), preference_fields(old));
        let user_id = prefs.user_id;
        self.view.put_preferences(prefs);
        self.set_fields_of_live_sessions(user_id, &fields)
    }

    fn delete_preferences(&mut self, user_id: i64) -> Result<()> {
        self.view.delete_preferences(user_id);
        self.set_fields_of_live_sessions(user_id, &preference_fields(None))
    }

    fn set_fields_of_live_sessions(&mut self, user_id: i64, fields: &[Field]) -> Result<()> {
        if fields.is_empty() {
            return Ok(());
        }
        // Sorted once for all the user's sessions. The index knows each
        // session's expiry: no session is read.
        let writes = FieldWrites::of(fields);
        for session in self.view.sessions_of_user(user_id)? {
            if session.is_live(self.now) {
                self.write_fields(&session, writes.clone());
            }
        }
        Ok(())
    }

    // ---- sessions

    /// `old`: the row before the change, as the event carries it; `None`
    /// for an insert, or a row that took this new primary key. An update
    /// of a session the state does not have (a row MySQL kept when the
    /// replicator had no cause to) is written whole, never as a partial
    /// hash; otherwise the state holds the same row as the before image.
    fn upsert_session(&mut self, session: Session, old: Option<Session>) -> Result<()> {
        let old = match old {
            Some(old) => self.view.session(&old.session_id)?,
            None => None,
        };
        self.view.put_session(session.clone(), old.as_ref());
        let was_live = old.as_ref().is_some_and(|o| o.is_live(self.now));
        match old {
            Some(old)
                if was_live
                    && session.is_live(self.now)
                    && old.user_id == session.user_id
                    && old.expires_at == session.expires_at =>
            {
                // Plain columns only: update the fields that changed.
                let fields = changed(session_fields(&session), session_fields(&old));
                self.write_fields(&SessionRef::from(&session), FieldWrites::of(&fields));
                Ok(())
            }
            Some(old)
                if !was_live && !session.is_live(self.now) && old.user_id == session.user_id =>
            {
                // Expired before and after: it has no hash, and the user's
                // index lists live sessions only, so neither changes. The
                // `DEL` removes a hash Redis has not yet expired.
                self.out
                    .commands
                    .push(Command::Del(self.keys.session(&session.session_id)));
                Ok(())
            }
            old => {
                // Liveness, expiry or user changed: so did the index.
                self.out.dirty_users.insert(session.user_id);
                if let Some(old) = old {
                    self.out.dirty_users.insert(old.user_id);
                }
                self.rewrite_session(&session)
            }
        }
    }

    /// Removes the session row and its key (not its attributes).
    fn remove_session(&mut self, session_id: &[u8]) -> Result<()> {
        if let Some(old) = self.view.delete_session(session_id)? {
            self.out.dirty_users.insert(old.user_id);
        }
        self.out
            .commands
            .push(Command::Del(self.keys.session(session_id)));
        Ok(())
    }

    /// Deletes the session and, as MySQL's cascade does, its attributes.
    fn delete_session(&mut self, session_id: &[u8]) -> Result<()> {
        for attr in self.view.attributes(session_id)? {
            self.view.delete_attribute(session_id, &attr.key);
        }
        self.remove_session(session_id)
    }

    /// Writes the whole hash from the state, or deletes it when not live
    /// (without reading what a hash would hold).
    fn rewrite_session(&mut self, session: &Session) -> Result<()> {
        let mut hash = None;
        if session.is_live(self.now) {
            let user = self.view.user(session.user_id)?;
            let prefs = self.view.preferences(session.user_id)?;
            let attributes = self.view.attributes(&session.session_id)?;
            hash = write_session(
                self.keys,
                self.now,
                session,
                user.as_ref(),
                prefs.as_ref(),
                &attributes,
            );
        }
        match hash {
            Some(commands) => self.out.commands.extend(commands),
            None => self
                .out
                .commands
                .push(Command::Del(self.keys.session(&session.session_id))),
        }
        Ok(())
    }

    // ---- session data

    fn upsert_attribute(&mut self, attr: Attribute) -> Result<()> {
        let (name, value) = attribute_field(&attr);
        let session = self.live_session(&attr.session_id)?;
        self.view.put_attribute(attr);
        if let Some(session) = session {
            let writes = FieldWrites::one(name, value);
            self.write_fields(&SessionRef::from(&session), writes);
        }
        Ok(())
    }

    fn delete_attribute(&mut self, attr: &Attribute) -> Result<()> {
        self.view.delete_attribute(&attr.session_id, &attr.key);
        if let Some(session) = self.live_session(&attr.session_id)? {
            let (name, _) = attribute_field(attr);
            let writes = FieldWrites::one(name, None);
            self.write_fields(&SessionRef::from(&session), writes);
        }
        Ok(())
    }

    // ---- helpers

    fn live_session(&self, session_id: &[u8]) -> Result<Option<Session>> {
        Ok(self
            .view
            .session(session_id)?
            .filter(|s| s.is_live(self.now)))
    }

    /// `HDEL` of the absent fields and `HSET` of the present ones on a live
    /// session's hash, with its `EXPIREAT` after any `HSET`.
    fn write_fields(&mut self, session: &SessionRef, writes: FieldWrites) {
        let key = self.keys.session(&session.session_id);
        if !writes.unset.is_empty() {
            self.out.commands.push(Command::HDel {
                key: key.clone(),
                fields: writes.unset,
            });
        }
        if !writes.set.is_empty() {
            self.out.commands.push(Command::HSet {
                key: key.clone(),
                fields: writes.set,
            });
            if let Some(at) = session.expire_at_seconds() {
                self.out.commands.push(Command::ExpireAt { key, at });
            }
        }
    }
}

#[cfg(test)]
mod tests;
