//! The rules of what MySQL does beyond plain row events: `TRUNCATE`,
//! deletes without foreign-key checks, XA.

use super::world::{attr, now, one_by_one_and_in_flight, prefs, session, user, World};
use super::*;

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
    xa_rows_are_held_until_commit_and_dropped_at_rollback
);
