use super::*;
use crate::model::Timestamp;
use crate::model::{Attribute, StateView};
use crate::position::BinlogPosition;

fn temp_store() -> (StateStore, PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "replicator-state-test-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    (StateStore::open(&dir).unwrap(), dir)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn session(id: &str, user_id: i64) -> Session {
    Session {
        session_id: id.as_bytes().to_vec(),
        user_id,
        ip_address: None,
        user_agent: None,
        created_at: None,
        expires_at: Some(Timestamp::from_parts(2_000_000_000, 0)),
        last_activity_at: None,
    }
}

#[test]
fn rows_index_and_checkpoint_round_trip() {
    let (store, dir) = temp_store();
    let mut batch = store.batch();
    batch.put_user(&User {
        user_id: 1,
        username: b"a".to_vec(),
        email: b"a@x".to_vec(),
    });
    batch.put_session(&session("s1", 1));
    batch.put_session(&session("s2", 1));
    batch.put_session(&session("s3", -5));
    for key in ["b", "a"] {
        batch.put_attribute(&Attribute {
            session_id: b"s1".to_vec(),
            key: key.as_bytes().to_vec(),
            value: Some(b"v".to_vec()),
        });
    }
    // An attribute of a session whose id extends s1's must not leak into s1.
    batch.put_attribute(&Attribute {
        session_id: b"s10".to_vec(),
        key: b"x".to_vec(),
        value: None,
    });
    assert!(store.checkpoint().unwrap().is_none());
    let position = BinlogPosition::parse("binlog.000001", 4).unwrap();
    let checkpoint = Checkpoint {
        format: STATE_FORMAT,
        position: position.clone(),
        snapshot: SnapshotInfo {
            id: "snap".into(),
            taken_at: 1,
            database: "db".into(),
            position,
        },
        committed_at: 2,
        skip_rows: 0,
    };
    store.commit(batch, &checkpoint).unwrap();

    assert_eq!(store.checkpoint().unwrap(), Some(checkpoint));
    assert_eq!(store.user(1).unwrap().unwrap().username, b"a");
    let reader = StateReader::new(&store);
    let attrs: Vec<_> = reader
        .attributes(b"s1")
        .unwrap()
        .into_iter()
        .map(|a| a.key)
        .collect();
    assert_eq!(attrs, [b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(
        reader
            .sessions_of_user(1)
            .unwrap()
            .into_iter()
            .map(|r| r.session_id)
            .collect::<Vec<_>>(),
        [b"s1".to_vec(), b"s2".to_vec()]
    );
    // The index carries each session's expiry.
    let refs = reader.sessions_of_user(1).unwrap();
    assert_eq!(
        refs[0].expires_at,
        Some(Timestamp::from_parts(2_000_000_000, 0))
    );
    let mut entries = Vec::new();
    store
        .for_each_index_entry(|u, s| {
            entries.push((u, s.session_id));
            Ok(())
        })
        .unwrap();
    assert_eq!(entries[0], (-5, b"s3".to_vec()));
    assert_eq!(entries.len(), 3);

    drop(reader);
    store.clear().unwrap();
    assert!(store.checkpoint().unwrap().is_none());
    assert!(store.session(b"s1").unwrap().is_none());
    assert!(StateReader::new(&store)
        .attributes(b"s1")
        .unwrap()
        .is_empty());
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn attributes_of_sessions_are_found_in_any_order() {
    let (store, dir) = temp_store();
    let mut batch = store.batch();
    // Sessions with attributes, of two id lengths, and orphan attributes
    // (of sessions never asked for) between them.
    let with_attributes = ["b", "d", "f", "aa", "ab", "zz"];
    for (n, id) in with_attributes.iter().chain(&["c", "e", "ac"]).enumerate() {
        for key in ["k1", "k2"] {
            batch.put_attribute(&Attribute {
                session_id: id.as_bytes().to_vec(),
                key: key.as_bytes().to_vec(),
                value: Some(format!("{id}-{key}-{n}").into_bytes()),
            });
        }
    }
    store.write_unlogged(batch).unwrap();

    let asked = [
        "a", "b", "d", "dd", "f", "aa", "ab", "zz", "b", "zz", "ab", "x", "f", "aa",
    ];
    // One reader for all (stepping where it can), as a snapshot reads.
    let reader = StateReader::new(&store);
    for id in asked {
        // A reader of its own seeks: the answer without stepping.
        let expected = StateReader::new(&store).attributes(id.as_bytes()).unwrap();
        assert_eq!(
            reader.attributes(id.as_bytes()).unwrap(),
            expected,
            "attributes of {id}"
        );
        assert_eq!(
            expected.len(),
            if with_attributes.contains(&id) { 2 } else { 0 }
        );
    }
    drop(reader);
    store.persist().unwrap();
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sessions_of_users_are_found_in_any_order() {
    let (store, dir) = temp_store();
    let mut batch = store.batch();
    let sessions_of = |user: i64| match user {
        1 => 1,
        2 => 3,
        3 => 2,
        5 => 1,
        8 => 2,
        -4 => 1,
        _ => 0,
    };
    for user in [-4, 1, 2, 3, 5, 8] {
        for n in 0..sessions_of(user) {
            batch.put_session(&session(&format!("u{user}-s{n}"), user));
        }
    }
    store.write_unlogged(batch).unwrap();

    // Ascending (stepping), with users without sessions, then back and forth.
    let asked = [-9, -4, 1, 2, 3, 4, 5, 8, 9, 2, 1, 8, 3, -4, 7, 8];
    let reader = StateReader::new(&store);
    for user in asked {
        let found = reader.sessions_of_user(user).unwrap();
        let expected = StateReader::new(&store).sessions_of_user(user).unwrap();
        assert_eq!(found, expected, "sessions of user {user}");
        assert_eq!(found.len(), sessions_of(user), "sessions of user {user}");
        assert!(found
            .iter()
            .all(|s| s.session_id.starts_with(format!("u{user}-").as_bytes())));
    }
    drop(reader);
    store.persist().unwrap();
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sessions_are_read_in_batches_in_the_order_asked() {
    let (store, dir) = temp_store();
    let mut batch = store.batch();
    // More sessions than one batched read takes, every third one missing.
    let count = MULTI_GET_BATCH * 2 + 7;
    for n in (0..count).filter(|n| n % 3 != 0) {
        batch.put_session(&session(&format!("s{n}"), n as i64));
    }
    store.write_unlogged(batch).unwrap();

    let ids: Vec<String> = (0..count).rev().map(|n| format!("s{n}")).collect();
    let found = store.sessions(ids.iter().map(|id| id.as_bytes())).unwrap();
    assert_eq!(found.len(), count);
    for (id, row) in ids.iter().zip(&found) {
        let n: usize = id[1..].parse().unwrap();
        match row {
            Some(row) => assert_eq!(row.user_id, n as i64, "session {id}"),
            None => assert_eq!(n % 3, 0, "session {id} is missing"),
        }
    }
    // The same through the reader, which the group's prefetch uses.
    let asked: Vec<&[u8]> = vec![b"s5", b"s3", b"s5", b"nope", b"s1"];
    let rows = StateReader::new(&store).sessions(&asked).unwrap();
    let users: Vec<Option<i64>> = rows.iter().map(|r| r.as_ref().map(|s| s.user_id)).collect();
    assert_eq!(users, [Some(5), None, Some(5), None, Some(1)]);
    store.persist().unwrap();
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}
