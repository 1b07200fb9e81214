//! The apply rules against an in-memory state and an in-memory Redis: after
//! any sequence of changes, Redis must equal the model of the state.

use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::model::{Content, Overlay};
use crate::position::BinlogPosition;

type Mem = crate::testing::MemState;

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Hash(BTreeMap<Bytes, Bytes>),
    ZSet(BTreeMap<Bytes, i64>),
}

#[derive(Default, Debug, PartialEq)]
struct Redis {
    data: HashMap<Bytes, Val>,
    ttl: HashMap<Bytes, i64>,
}

impl Redis {
    fn exec(&mut self, cmds: &[Command], now: i64) {
        for c in cmds {
            match c.clone() {
                Command::Del(k) => {
                    self.data.remove(&k);
                    self.ttl.remove(&k);
                }
                Command::HSet { key, fields } => {
                    let e = self.data.entry(key).or_insert(Val::Hash(BTreeMap::new()));
                    let Val::Hash(h) = e else {
                        panic!("wrong type")
                    };
                    h.extend(fields);
                }
                Command::HDel { key, fields } => {
                    if let Some(Val::Hash(h)) = self.data.get_mut(&key) {
                        fields.iter().for_each(|f| {
                            h.remove(f);
                        });
                        if h.is_empty() {
                            self.data.remove(&key);
                            self.ttl.remove(&key);
                        }
                    }
                }
                Command::ExpireAt { key, at } => {
                    if self.data.contains_key(&key) {
                        if at <= now {
                            self.data.remove(&key);
                            self.ttl.remove(&key);
                        } else {
                            self.ttl.insert(key, at);
                        }
                    }
                }
                Command::ZAdd { key, members } => {
                    let e = self.data.entry(key).or_insert(Val::ZSet(BTreeMap::new()));
                    let Val::ZSet(z) = e else {
                        panic!("wrong type")
                    };
                    for (s, m) in members {
                        z.insert(m, s);
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// The model of the state, as a fresh Redis.
    fn model_of(state: &Mem, keys: &Keys, now: Timestamp) -> Redis {
        let mut r = Redis::default();
        let mut cmds = Vec::new();
        let mut by_user: BTreeMap<i64, Vec<(i64, Bytes)>> = BTreeMap::new();
        for s in state.sessions.values() {
            let attrs = state.attributes(&s.session_id).unwrap();
            if let Some(c) = write_session(
                keys,
                now,
                s,
                state.users.get(&s.user_id),
                state.preferences.get(&s.user_id),
                &attrs,
            ) {
                cmds.extend(c);
                by_user
                    .entry(s.user_id)
                    .or_default()
                    .push((s.expire_at_seconds().unwrap(), s.session_id.clone()));
            }
        }
        for (u, m) in by_user {
            cmds.extend(write_user_index(keys, u, m));
        }
        r.exec(&cmds, now.ceil_seconds());
        r
    }
}

const NOW: i64 = 1_800_000_000;

fn now() -> Timestamp {
    Timestamp::from_parts(NOW, 0)
}

fn user(id: i64, name: &str) -> SourceRow {
    SourceRow::User(User {
        user_id: id,
        username: name.into(),
        email: format!("{name}@x").into(),
    })
}

fn prefs(id: i64, theme: Option<&str>) -> SourceRow {
    SourceRow::Preferences(Preferences {
        user_id: id,
        theme: theme.map(Into::into),
        language: Some(b"en".to_vec()),
        notifications_enabled: Some(true),
    })
}

fn session(id: &str, user_id: i64, expires_in: i64) -> SourceRow {
    SourceRow::Session(Session {
        session_id: id.into(),
        user_id,
        ip_address: Some(b"192.0.2.1".to_vec()),
        user_agent: None,
        created_at: Some(Timestamp::from_parts(NOW - 100, 0)),
        expires_at: Some(Timestamp::from_parts(NOW + expires_in, 0)),
        last_activity_at: None,
    })
}

fn attr(sid: &str, key: &str, value: Option<&str>) -> SourceRow {
    SourceRow::Attribute(Attribute {
        session_id: sid.into(),
        key: key.into(),
        value: value.map(Into::into),
    })
}

struct World {
    state: Mem,
    redis: Redis,
    keys: Keys,
    /// Build each group while the one before is in flight (its writes not
    /// yet committed to the state), as streaming does.
    pipelined: bool,
    in_flight: Option<crate::model::Pending>,
}

impl World {
    fn new() -> Self {
        World {
            state: Mem::default(),
            redis: Redis::default(),
            keys: Keys::new("p:"),
            pipelined: false,
            in_flight: None,
        }
    }

    fn pipelined() -> Self {
        World {
            pipelined: true,
            ..World::new()
        }
    }

    /// Applies one group and checks Redis equals the model of the state.
    fn group(&mut self, changes: Vec<RowChange>) -> Vec<Command> {
        self.pieces(vec![Content::Rows(changes)])
    }

    /// Applies one group of pieces, as [`Self::group`] does.
    fn pieces(&mut self, pieces: Vec<Content>) -> Vec<Command> {
        let base = self.state.clone();
        let mut overlay = Overlay::over(&base, self.in_flight.as_ref());
        let mut out = GroupOutput::default();
        let at = BinlogPosition::parse("binlog.000001", 4).unwrap();
        for content in pieces {
            // As streaming does: the attributes' sessions read first, in a batch.
            if let Content::Rows(changes) = &content {
                prefetch(changes, &overlay).unwrap();
            }
            apply_content(content, &mut overlay, &self.keys, now(), &mut out, &at).unwrap();
        }
        finish_group(&overlay, &self.keys, now(), &mut out).unwrap();
        let pending = overlay.pending;
        // The group before is acknowledged, and committed, only now.
        if let Some(before) = self.in_flight.take() {
            self.state.commit(&before);
        }
        self.redis.exec(&out.commands, NOW);
        let mut expected = self.state.clone();
        expected.commit(&pending);
        assert_eq!(
            self.redis,
            Redis::model_of(&expected, &self.keys, now()),
            "after {:?}",
            out.commands
        );
        match self.pipelined {
            true => self.in_flight = Some(pending),
            false => self.state = expected,
        }
        out.commands
    }

    /// The state with the group in flight committed.
    fn settled(&self) -> Mem {
        let mut state = self.state.clone();
        if let Some(p) = &self.in_flight {
            state.commit(p);
        }
        state
    }

    fn hash(&self, sid: &str) -> Option<BTreeMap<String, String>> {
        match self.redis.data.get(&self.keys.session(sid.as_bytes()))? {
            Val::Hash(h) => Some(
                h.iter()
                    .map(|(k, v)| {
                        (
                            String::from_utf8_lossy(k).into(),
                            String::from_utf8_lossy(v).into(),
                        )
                    })
                    .collect(),
            ),
            _ => None,
        }
    }
}

use RowChange::{Delete, Insert, Update};

fn upd(before: SourceRow, after: SourceRow) -> RowChange {
    Update { before, after }
}

fn every_table_drives_updates_and_redis_follows_the_model(mut w: World) {
    w.group(vec![
        Insert(user(1, "a")),
        Insert(prefs(1, Some("dark"))),
        Insert(session("s1", 1, 3600)),
    ]);
    assert_eq!(w.hash("s1").unwrap()["theme"], "dark");
    w.group(vec![
        Insert(attr("s1", "cart", Some("[]"))),
        Insert(attr("s1", "n", None)),
    ]);
    assert_eq!(w.hash("s1").unwrap()["attr_cart"], "[]");

    // users and preferences fan out; NULL theme removes the field.
    let cmds = w.group(vec![
        upd(user(1, "a"), user(1, "b")),
        upd(prefs(1, Some("dark")), prefs(1, None)),
    ]);
    assert!(cmds.iter().any(|c| matches!(c, Command::HDel { .. })));
    assert_eq!(w.hash("s1").unwrap()["username"], "b");
    assert!(!w.hash("s1").unwrap().contains_key("theme"));

    // A plain column update is incremental: no DEL of the hash.
    let mut s2 = session("s1", 1, 3600);
    if let SourceRow::Session(s) = &mut s2 {
        s.user_agent = Some(b"ua".to_vec());
    }
    let cmds = w.group(vec![upd(session("s1", 1, 3600), s2.clone())]);
    assert!(
        !cmds
            .iter()
            .any(|c| matches!(c, Command::Del(k) if k == b"p:session:s1")),
        "{cmds:?}"
    );

    // Attribute renamed and moved.
    w.group(vec![Insert(session("s2", 1, 7200))]);
    w.group(vec![upd(
        attr("s1", "cart", Some("[]")),
        attr("s2", "basket", Some("[1]")),
    )]);
    assert!(!w.hash("s1").unwrap().contains_key("attr_cart"));
    assert_eq!(w.hash("s2").unwrap()["attr_basket"], "[1]");

    // Preferences deleted, then user deleted: cascade.
    w.group(vec![Delete(prefs(1, None))]);
    w.group(vec![Delete(user(1, "b"))]);
    assert!(w.redis.data.is_empty(), "{:?}", w.redis);
    assert!(w.settled().sessions.is_empty() && w.settled().attributes.is_empty());
}

fn session_lifecycle_expiry_moves_and_renames(mut w: World) {
    w.group(vec![
        Insert(user(1, "a")),
        Insert(user(2, "b")),
        Insert(prefs(2, Some("x"))),
    ]);
    // Inserted already expired: nothing in Redis, but attributes kept in state.
    w.group(vec![
        Insert(session("s", 1, -10)),
        Insert(attr("s", "k", Some("v"))),
    ]);
    assert!(w.hash("s").is_none());
    // Extended into the future: the full hash, attributes included.
    w.group(vec![upd(session("s", 1, -10), session("s", 1, 600))]);
    assert_eq!(w.hash("s").unwrap()["attr_k"], "v");
    // Moved to another user: user fields, preferences and both indexes follow.
    w.group(vec![upd(session("s", 1, 600), session("s", 2, 600))]);
    let h = w.hash("s").unwrap();
    assert_eq!((h["username"].as_str(), h["theme"].as_str()), ("b", "x"));
    assert!(!w.redis.data.contains_key(&w.keys.user_index(1)));
    // Primary key changed: old key gone, new key complete (no attributes: MySQL keeps them under the old id).
    w.group(vec![upd(session("s", 2, 600), session("t", 2, 600))]);
    assert!(w.hash("s").is_none());
    assert_eq!(w.hash("t").unwrap()["username"], "b");
    // Moved into the past: key and index member gone.
    w.group(vec![upd(session("t", 2, 600), session("t", 2, -1))]);
    assert!(w.redis.data.is_empty());
    // Writes to an expired or unknown session create nothing.
    w.group(vec![
        Insert(attr("t", "k", Some("v"))),
        Insert(attr("ghost", "k", Some("v"))),
    ]);
    assert!(w.redis.data.is_empty());
}

fn deleting_a_session_drops_its_data_and_index_member(mut w: World) {
    w.group(vec![
        Insert(user(1, "a")),
        Insert(session("s1", 1, 100)),
        Insert(session("s2", 1, 200)),
        Insert(attr("s1", "k", Some("v"))),
    ]);
    w.group(vec![Delete(session("s1", 1, 100))]);
    assert!(w.settled().attributes.is_empty());
    let Some(Val::ZSet(z)) = w.redis.data.get(&w.keys.user_index(1)) else {
        panic!()
    };
    assert_eq!(z.keys().collect::<Vec<_>>(), [&b"s2".to_vec()]);
    assert_eq!(w.redis.ttl[&w.keys.user_index(1)], NOW + 200);
}

fn an_update_of_an_expired_session_reads_and_rewrites_nothing(mut w: World) {
    w.group(vec![
        Insert(user(1, "a")),
        Insert(session("live", 1, 600)),
        Insert(session("gone", 1, -10)),
        Insert(attr("gone", "k", Some("v"))),
    ]);
    let mut touched = session("gone", 1, -10);
    if let SourceRow::Session(s) = &mut touched {
        s.user_agent = Some(b"ua".to_vec());
    }
    // Still expired, same user: no hash, and the index is left as it is.
    let cmds = w.group(vec![upd(session("gone", 1, -10), touched)]);
    assert_eq!(cmds, [Command::Del(w.keys.session(b"gone"))]);
}

#[test]
fn the_index_entry_is_written_only_when_the_session_moves_or_its_expiry_changes() {
    let mut state = Mem::default();
    let keys = Keys::new("p:");
    let written = |state: &Mem, change: RowChange| {
        let mut overlay = Overlay::new(state);
        apply(
            change,
            &mut overlay,
            &keys,
            now(),
            &mut GroupOutput::default(),
        )
        .unwrap();
        overlay.pending
    };
    let pending = written(&state, Insert(session("s", 1, 600)));
    assert_eq!(pending.index.len(), 1);
    state.commit(&pending);

    let mut active = session("s", 1, 600);
    if let SourceRow::Session(s) = &mut active {
        s.last_activity_at = Some(now());
    }
    let pending = written(&state, upd(session("s", 1, 600), active));
    assert!(pending.index.is_empty(), "{:?}", pending.index);

    let pending = written(&state, upd(session("s", 1, 600), session("s", 1, 900)));
    assert_eq!(pending.index.len(), 1);
    let pending = written(&state, upd(session("s", 1, 600), session("s", 2, 600)));
    assert_eq!(
        pending.index.len(),
        2,
        "removed from user 1, added to user 2"
    );
}

fn users_and_preferences_write_only_the_fields_that_changed(mut w: World) {
    w.group(vec![
        Insert(user(1, "a")),
        Insert(prefs(1, Some("dark"))),
        Insert(session("s1", 1, 600)),
        Insert(session("s2", 1, 600)),
    ]);
    // Columns the model does not keep (`last_login_at`, `updated_at`)
    // arrive as rows equal in every column the model has: nothing to write.
    let cmds = w.group(vec![
        upd(user(1, "a"), user(1, "a")),
        upd(prefs(1, Some("dark")), prefs(1, Some("dark"))),
    ]);
    assert_eq!(cmds, []);
    // One column changed: one field, in each live session.
    let mut renamed = user(1, "a");
    if let SourceRow::User(u) = &mut renamed {
        u.email = b"new@x".to_vec();
    }
    let cmds = w.group(vec![upd(user(1, "a"), renamed)]);
    let fields: Vec<_> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::HSet { fields, .. } => Some(fields.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        fields,
        vec![vec![(b"email".to_vec(), b"new@x".to_vec())]; 2]
    );
    assert_eq!(w.hash("s2").unwrap()["email"], "new@x");
    let cmds = w.group(vec![upd(prefs(1, Some("dark")), prefs(1, Some("light")))]);
    assert_eq!(
        cmds.len(),
        4,
        "an HSET of the theme and an EXPIREAT per session: {cmds:?}"
    );
}

fn replaying_a_group_against_its_own_result_changes_nothing(mut w: World) {
    let changes = || {
        vec![
            Insert(user(1, "a")),
            Insert(session("s1", 1, 100)),
            Insert(attr("s1", "k", Some("v"))),
            upd(user(1, "a"), user(1, "b")),
        ]
    };
    w.group(changes());
    let before = w.hash("s1");
    w.group(changes());
    assert_eq!(w.hash("s1"), before);
}

/// The group's sessions are read before its changes apply: a row read then
/// must not hide what the group itself, or the one in flight, wrote since.
fn prefetched_sessions_never_hide_newer_writes(mut w: World) {
    w.group(vec![
        Insert(user(1, "a")),
        Insert(session("s1", 1, 600)),
        Insert(session("s2", 1, 600)),
    ]);
    w.group(vec![Insert(session("s3", 1, 600))]);
    w.group(vec![
        Delete(session("s1", 1, 600)),
        upd(session("s2", 1, 600), session("s2", 1, -10)),
        Insert(attr("s1", "k", Some("v"))),
        Insert(attr("s2", "k", Some("v"))),
        Insert(attr("s3", "k", Some("v"))),
    ]);
    assert_eq!(w.hash("s1"), None);
    assert_eq!(w.hash("s2"), None);
    assert_eq!(w.hash("s3").unwrap()["attr_k"], "v");
}

/// Each scenario, with groups applied one by one and with each group built
/// while the one before is in flight.
macro_rules! one_by_one_and_in_flight {
    ($($name:ident),*) => {$(
        mod $name {
            #[test]
            fn one_by_one() {
                super::$name(super::World::new())
            }

            #[test]
            fn in_flight() {
                super::$name(super::World::pipelined())
            }
        }
    )*};
}

fn populated(w: &mut World) {
    w.group(vec![
        Insert(user(1, "a")),
        Insert(prefs(1, Some("dark"))),
        Insert(session("s1", 1, 3600)),
        Insert(session("s2", 1, 600)),
        Insert(user(2, "b")),
        Insert(session("s3", 2, 900)),
        Insert(attr("s1", "cart", Some("[]"))),
        Insert(attr("s3", "k", Some("v"))),
    ]);
}

fn truncate_empties_one_table_without_cascade(mut w: World) {
    use crate::model::Table as T;
    populated(&mut w);
    w.pieces(vec![Content::Truncate(T::Attributes)]);
    assert!(!w.hash("s1").unwrap().contains_key("attr_cart"));
    assert!(w.settled().attributes.is_empty());
    w.pieces(vec![Content::Truncate(T::Preferences)]);
    assert!(!w.hash("s1").unwrap().contains_key("theme"));
    // Users go; their sessions stay, without user fields.
    w.pieces(vec![Content::Truncate(T::Users)]);
    let s1 = w.hash("s1").unwrap();
    assert!(
        !s1.contains_key("username") && s1["user_id"] == "1",
        "{s1:?}"
    );
    w.group(vec![Insert(attr("s2", "k", Some("v")))]);
    // Sessions go; their attributes stay in the state, as MySQL keeps them.
    w.pieces(vec![Content::Truncate(T::Sessions)]);
    assert!(w.redis.data.is_empty(), "{:?}", w.redis.data.keys());
    assert_eq!(w.settled().attributes.len(), 1);
    // A session inserted again under that id finds its attribute.
    w.group(vec![Insert(session("s2", 1, 600))]);
    assert_eq!(w.hash("s2").unwrap()["attr_k"], "v");
}

fn a_delete_without_foreign_key_checks_leaves_orphans(mut w: World) {
    populated(&mut w);
    w.group(vec![RowChange::Remove(user(1, "a"))]);
    let s1 = w.hash("s1").unwrap();
    assert!(!s1.contains_key("email") && s1["theme"] == "dark", "{s1:?}");
    assert!(w.hash("s2").is_some());
    // Such an orphan session is still a session: updates reach it.
    let mut touched = session("s1", 1, 3600);
    if let SourceRow::Session(s) = &mut touched {
        s.ip_address = Some(b"10.0.0.9".to_vec());
    }
    w.group(vec![upd(session("s1", 1, 3600), touched)]);
    assert_eq!(w.hash("s1").unwrap()["ip_address"], "10.0.0.9");
    // A removed session keeps its attributes in the state.
    w.group(vec![RowChange::Remove(session("s3", 2, 900))]);
    assert!(w.hash("s3").is_none());
    assert_eq!(w.settled().attributes.len(), 2);
}

fn an_update_of_a_session_the_state_lacks_is_written_whole(mut w: World) {
    populated(&mut w);
    // MySQL has s9 (the state never saw its insert); its update arrives.
    let mut after = session("s9", 1, 1200);
    if let SourceRow::Session(s) = &mut after {
        s.ip_address = Some(b"10.0.0.1".to_vec());
    }
    w.group(vec![upd(session("s9", 1, 1200), after)]);
    let hash = w.hash("s9").unwrap();
    for field in ["user_id", "username", "expires_at", "ip_address", "theme"] {
        assert!(hash.contains_key(field), "{field} missing from {hash:?}");
    }
}

fn xa_rows_are_held_until_commit_and_dropped_at_rollback(mut w: World) {
    use crate::model::Xid;
    populated(&mut w);
    let (a, b) = (Xid("X'61',X'',1".into()), Xid("X'62',X'',1".into()));
    w.pieces(vec![Content::XaPrepare {
        xid: a.clone(),
        changes: vec![
            Insert(attr("s1", "held", Some("1"))),
            Delete(session("s2", 1, 600)),
        ],
    }]);
    assert!(
        !w.hash("s1").unwrap().contains_key("attr_held"),
        "not at prepare"
    );
    assert!(w.hash("s2").is_some());
    w.pieces(vec![
        Content::XaPrepare {
            xid: b.clone(),
            changes: vec![Insert(attr("s1", "never", Some("1")))],
        },
        // Committed in between, in its own order.
        Content::Rows(vec![Insert(attr("s1", "other", Some("2")))]),
    ]);
    w.pieces(vec![Content::XaCommit(a)]);
    assert_eq!(w.hash("s1").unwrap()["attr_held"], "1");
    assert!(w.hash("s2").is_none());
    w.pieces(vec![Content::XaRollback(b)]);
    assert!(!w.hash("s1").unwrap().contains_key("attr_never"));
    assert!(w.settled().xa.is_empty());
}

#[test]
fn an_xa_commit_of_rows_never_seen_stops() {
    let mut w = World::new();
    let base = w.state.clone();
    let mut overlay = Overlay::over(&base, None);
    let mut out = GroupOutput::default();
    let at = BinlogPosition::parse("binlog.000003", 900).unwrap();
    let err = apply_content(
        Content::XaCommit(crate::model::Xid("X'7a',X'',1".into())),
        &mut overlay,
        &w.keys,
        now(),
        &mut out,
        &at,
    )
    .unwrap_err();
    assert!(err.to_string().contains("binlog.000003:900"), "{err}");
    assert!(err.to_string().contains("never saw prepared"), "{err}");
    w.state = base;
}

one_by_one_and_in_flight!(
    truncate_empties_one_table_without_cascade,
    a_delete_without_foreign_key_checks_leaves_orphans,
    an_update_of_a_session_the_state_lacks_is_written_whole,
    xa_rows_are_held_until_commit_and_dropped_at_rollback,
    every_table_drives_updates_and_redis_follows_the_model,
    session_lifecycle_expiry_moves_and_renames,
    deleting_a_session_drops_its_data_and_index_member,
    an_update_of_an_expired_session_reads_and_rewrites_nothing,
    users_and_preferences_write_only_the_fields_that_changed,
    replaying_a_group_against_its_own_result_changes_nothing,
    prefetched_sessions_never_hide_newer_writes
);
