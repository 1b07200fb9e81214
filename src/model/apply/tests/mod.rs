//! The apply rules against an in-memory state and an in-memory Redis: after
//! any sequence of changes, Redis must equal the model of the state.

use super::*;
use crate::model::{Content, Overlay};
use crate::position::BinlogPosition;

mod exactness;
mod world;

use world::{attr, now, one_by_one_and_in_flight, prefs, session, user, Mem, Val, World, NOW};

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

one_by_one_and_in_flight!(
    every_table_drives_updates_and_redis_follows_the_model,
    session_lifecycle_expiry_moves_and_renames,
    deleting_a_session_drops_its_data_and_index_member,
    an_update_of_an_expired_session_reads_and_rewrites_nothing,
    users_and_preferences_write_only_the_fields_that_changed,
    replaying_a_group_against_its_own_result_changes_nothing,
    prefetched_sessions_never_hide_newer_writes
);
