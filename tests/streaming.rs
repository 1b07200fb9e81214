//! `replicator run` against the real servers: every case of the model's
//! streaming behaviour, each checking the exact Redis state afterwards.

mod common;

use std::time::Duration;

use common::{stderr, TestDb};
use redis::AsyncCommands;

/// Users 1 (with preferences) and 2 (without); sessions s1, s2 of user 1,
/// s3 of user 2, and `old`, expired, of user 1 with an attribute.
const FIXTURE: &str = "
INSERT INTO users (user_id, username, email, password_hash) VALUES
  (1, 'ann', 'ann@x', 'h'), (2, 'bob', 'bob@x', 'h');
INSERT INTO user_preferences (user_id, theme, language, notifications_enabled) VALUES (1, 'dark', 'en', TRUE);
INSERT INTO user_sessions (session_id, user_id, ip_address, user_agent, created_at, expires_at, last_activity_at) VALUES
  ('s1', 1, '192.0.2.1', 'ua1', '2024-01-01 00:00:00', '2037-01-01 00:00:00', '2024-01-01 00:00:00'),
  ('s2', 1, '192.0.2.2', 'ua2', '2024-01-01 00:00:00', '2037-02-01 00:00:00', NULL),
  ('s3', 2, NULL, NULL, '2024-01-01 00:00:00', '2037-03-01 00:00:00', NULL),
  ('old', 1, NULL, NULL, '2020-01-01 00:00:00', '2020-01-02 00:00:00', NULL);
INSERT INTO session_data (session_id, attribute_key, attribute_value) VALUES
  ('s1', 'cart', '[1]'), ('old', 'cart', '[9]');
";

const JAN_2037: i64 = 2_114_380_800;
const FEB_2037: i64 = 2_117_059_200;
const MAR_2037: i64 = 2_119_478_400;

/// A database with the fixture, snapshotted by a first `run`.
async fn streaming_db(test: &str) -> TestDb {
    let db = TestDb::new(test).await;
    db.sql(FIXTURE).await;
    db.catch_up().await;
    db
}

fn field<'a>(h: &'a std::collections::BTreeMap<String, String>, f: &str) -> Option<&'a str> {
    h.get(f).map(String::as_str)
}

#[tokio::test]
async fn users_changes_fan_out_and_deletes_cascade() {
    let db = streaming_db("stream_users").await;
    db.change("UPDATE users SET username = 'anna', email = 'anna@x' WHERE user_id = 1")
        .await;
    for s in ["s1", "s2"] {
        let h = db.session(s).await;
        assert_eq!(
            (field(&h, "username"), field(&h, "email")),
            (Some("anna"), Some("anna@x"))
        );
    }
    assert_eq!(field(&db.session("s3").await, "username"), Some("bob"));

    // A user inserted after their session (foreign keys off): the session gains the fields.
    db.sql(
        "SET FOREIGN_KEY_CHECKS = 0;
         INSERT INTO user_sessions (session_id, user_id, created_at, expires_at) VALUES ('s9', 9, NOW(), '2037-01-01');
         SET FOREIGN_KEY_CHECKS = 1;",
    )
    .await;
    db.catch_up().await;
    assert_eq!(field(&db.session("s9").await, "username"), None);
    db.change("INSERT INTO users (user_id, username, email, password_hash) VALUES (9, 'nine', 'n@x', 'h')").await;
    assert_eq!(field(&db.session("s9").await, "username"), Some("nine"));

    db.change("DELETE FROM users WHERE user_id = 1").await;
    let keys = db.keys().await;
    for gone in ["session:s1", "session:s2", "user:1:sessions"] {
        assert!(!keys.contains(&gone.to_string()), "{gone}: {keys:?}");
    }
    assert!(keys.contains(&"session:s3".to_string()));
}

#[tokio::test]
async fn preferences_insert_update_delete() {
    let db = streaming_db("stream_prefs").await;
    db.change("INSERT INTO user_preferences (user_id, theme, language, notifications_enabled) VALUES (2, 'light', 'de', FALSE)").await;
    let h = db.session("s3").await;
    assert_eq!(
        (
            field(&h, "theme"),
            field(&h, "language"),
            field(&h, "notifications_enabled")
        ),
        (Some("light"), Some("de"), Some("false"))
    );
    db.change(
        "UPDATE user_preferences SET theme = NULL, notifications_enabled = TRUE WHERE user_id = 2",
    )
    .await;
    let h = db.session("s3").await;
    assert_eq!(
        (field(&h, "theme"), field(&h, "notifications_enabled")),
        (None, Some("true"))
    );
    db.change("DELETE FROM user_preferences WHERE user_id = 1")
        .await;
    for s in ["s1", "s2"] {
        let h = db.session(s).await;
        assert!(
            !h.contains_key("theme")
                && !h.contains_key("language")
                && !h.contains_key("notifications_enabled")
        );
    }
}

#[tokio::test]
async fn session_insert_update_and_delete() {
    let db = streaming_db("stream_sessions").await;
    db.change("INSERT INTO user_sessions (session_id, user_id, ip_address, user_agent, created_at, expires_at, last_activity_at)
         VALUES ('n1', 2, '::1', 'ua', '2024-05-05 05:05:05', '2037-01-01 00:00:00', NULL)",
    )
    .await;
    let h = db.session("n1").await;
    assert_eq!(field(&h, "username"), Some("bob"));
    assert_eq!(
        field(&h, "session_created_at"),
        Some("2024-05-05T05:05:05Z")
    );
    assert_eq!(db.expire_time("session:n1").await, JAN_2037);
    assert_eq!(
        db.index(2).await,
        [("n1".to_string(), JAN_2037), ("s3".to_string(), MAR_2037)]
    );
    assert_eq!(db.expire_time("user:2:sessions").await, MAR_2037);

    // Any column; NULL removes the field.
    db.change("UPDATE user_sessions SET ip_address = NULL, user_agent = 'new', last_activity_at = '2024-06-01 00:00:00' WHERE session_id = 'n1'").await;
    let h = db.session("n1").await;
    assert_eq!(
        (field(&h, "ip_address"), field(&h, "user_agent")),
        (None, Some("new"))
    );
    assert_eq!(field(&h, "last_activity_at"), Some("2024-06-01T00:00:00Z"));

    // Delete: key and index member gone, index TTL follows the remaining session.
    db.change("DELETE FROM user_sessions WHERE session_id = 's3'")
        .await;
    assert!(db.session("s3").await.is_empty());
    assert_eq!(db.index(2).await, [("n1".to_string(), JAN_2037)]);
    assert_eq!(db.expire_time("user:2:sessions").await, JAN_2037);
}

#[tokio::test]
async fn session_expiry_moves_and_renames() {
    let db = streaming_db("stream_expiry").await;
    // Into the past: key and index member gone.
    db.change("UPDATE user_sessions SET expires_at = '2021-01-01' WHERE session_id = 's2'")
        .await;
    assert!(db.session("s2").await.is_empty());
    assert_eq!(db.index(1).await, [("s1".to_string(), JAN_2037)]);

    // An expired session extended into the future: the full hash, attributes included.
    db.change("UPDATE user_sessions SET expires_at = '2037-02-01' WHERE session_id = 'old'")
        .await;
    let h = db.session("old").await;
    assert_eq!(
        (field(&h, "attr_cart"), field(&h, "theme")),
        (Some("[9]"), Some("dark"))
    );
    assert_eq!(db.expire_time("session:old").await, FEB_2037);

    // Moved to another user: user fields, preferences and both indexes follow.
    db.change("UPDATE user_sessions SET user_id = 2 WHERE session_id = 's1'")
        .await;
    let h = db.session("s1").await;
    assert_eq!(
        (
            field(&h, "user_id"),
            field(&h, "username"),
            field(&h, "theme")
        ),
        (Some("2"), Some("bob"), None)
    );
    assert_eq!(field(&h, "attr_cart"), Some("[1]"));
    assert!(db.index(1).await.iter().all(|(m, _)| m != "s1"));
    assert!(db.index(2).await.iter().any(|(m, _)| m == "s1"));

    // session_id changed (no attributes hold it back): old key gone, new key complete.
    db.change("UPDATE user_sessions SET session_id = 's3-renamed' WHERE session_id = 's3'")
        .await;
    assert!(db.session("s3").await.is_empty());
    assert_eq!(
        field(&db.session("s3-renamed").await, "username"),
        Some("bob")
    );
    assert!(db.index(2).await.iter().all(|(m, _)| m != "s3"));
}

#[tokio::test]
async fn session_data_changes_touch_one_field() {
    let db = streaming_db("stream_data").await;
    db.change("INSERT INTO session_data (session_id, attribute_key, attribute_value) VALUES ('s2', 'k', 'v'), ('s2', 'nul', NULL)").await;
    let h = db.session("s2").await;
    assert_eq!(
        (field(&h, "attr_k"), field(&h, "attr_nul")),
        (Some("v"), None)
    );
    db.change("UPDATE session_data SET attribute_value = 'w' WHERE session_id = 's2' AND attribute_key = 'k'").await;
    assert_eq!(field(&db.session("s2").await, "attr_k"), Some("w"));
    // Renamed key, then moved to another session.
    db.change("UPDATE session_data SET attribute_key = 'k2' WHERE session_id = 's2' AND attribute_key = 'k'").await;
    let h = db.session("s2").await;
    assert_eq!(
        (field(&h, "attr_k"), field(&h, "attr_k2")),
        (None, Some("w"))
    );
    db.change("UPDATE session_data SET session_id = 's3' WHERE session_id = 's2' AND attribute_key = 'k2'").await;
    assert_eq!(field(&db.session("s2").await, "attr_k2"), None);
    assert_eq!(field(&db.session("s3").await, "attr_k2"), Some("w"));
    db.change("DELETE FROM session_data WHERE session_id = 's1'")
        .await;
    assert_eq!(field(&db.session("s1").await, "attr_cart"), None);
    // Writes to an expired or unknown session create nothing.
    db.change("INSERT INTO session_data (session_id, attribute_key, attribute_value) VALUES ('old', 'x', 'y');
         SET FOREIGN_KEY_CHECKS = 0;
         INSERT INTO session_data (session_id, attribute_key, attribute_value) VALUES ('ghost', 'x', 'y');
         SET FOREIGN_KEY_CHECKS = 1;",
    )
    .await;
    let keys = db.keys().await;
    assert!(
        !keys.contains(&"session:old".to_string()) && !keys.contains(&"session:ghost".to_string())
    );
}

#[tokio::test]
async fn deleting_a_session_cascades_to_its_data() {
    let db = streaming_db("stream_cascade").await;
    db.change("DELETE FROM user_sessions WHERE session_id = 's1'")
        .await;
    assert!(db.session("s1").await.is_empty());
    // Its session_data went with it (MySQL logged no row event for that):
    // a session re-created under the same id has no attributes.
    db.change("INSERT INTO user_sessions (session_id, user_id, created_at, expires_at) VALUES ('s1', 1, NOW(), '2037-01-01')",
    )
    .await;
    assert_eq!(field(&db.session("s1").await, "attr_cart"), None);
}

#[tokio::test]
async fn a_large_transaction_is_applied_in_steps() {
    let db = streaming_db("stream_large").await;
    let values: Vec<String> = (0..120)
        .map(|i| format!("('s2', 'k{i}', 'v{i}')"))
        .collect();
    db.sql(&format!(
        "START TRANSACTION;
         INSERT INTO session_data (session_id, attribute_key, attribute_value) VALUES {};
         UPDATE users SET username = 'big' WHERE user_id = 1;
         COMMIT;",
        values.join(",")
    ))
    .await;
    let out = db
        .run_ok(&[
            "run",
            "--exit-when-caught-up",
            "--max-transaction-rows",
            "50",
        ])
        .await;
    assert!(
        stderr(&out).contains("applying it in several steps"),
        "{}",
        stderr(&out)
    );
    let h = db.session("s2").await;
    assert_eq!(h.keys().filter(|k| k.starts_with("attr_k")).count(), 120);
    assert_eq!(field(&h, "username"), Some("big"));
    db.assert_verified().await;
}

#[tokio::test]
async fn other_tables_and_databases_are_ignored_and_the_checkpoint_moves() {
    let db = streaming_db("stream_other").await;
    let other = TestDb::new("stream_other_db").await;
    db.sql("CREATE TABLE notes (id INT PRIMARY KEY, session_id VARCHAR(255)); INSERT INTO notes VALUES (1, 's1');")
        .await;
    other.sql(FIXTURE).await;
    other
        .sql("UPDATE users SET username = 'intruder' WHERE user_id = 1")
        .await;
    let before: serde_json::Value =
        serde_json::from_slice(&db.run_ok(&["status", "--json"]).await.stdout).unwrap();
    db.catch_up().await;
    let after: serde_json::Value =
        serde_json::from_slice(&db.run_ok(&["status", "--json"]).await.stdout).unwrap();
    let pos = |v: &serde_json::Value| {
        (
            v["checkpoint"]["position"]["file"]
                .as_str()
                .unwrap()
                .to_string(),
            v["checkpoint"]["position"]["offset"].as_u64().unwrap(),
        )
    };
    assert!(pos(&after) > pos(&before), "{before} -> {after}");
    assert_eq!(field(&db.session("s1").await, "username"), Some("ann"));
    db.assert_verified().await;
}

#[tokio::test]
async fn the_running_sidecar_applies_changes_and_stops_cleanly_on_sigterm() {
    let db = streaming_db("stream_sidecar").await;
    let mut child = db
        .replicator(&["run"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    db.sql("UPDATE users SET username = 'live' WHERE user_id = 2")
        .await;
    db.wait_for(
        "the change to reach Redis",
        Duration::from_secs(20),
        || async { field(&db.session("s3").await, "username") == Some("live") },
    )
    .await;
    let pid = child.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("stopped within 5 s")
        .unwrap();
    assert!(status.success(), "{status}");
    db.assert_verified().await;
}

#[tokio::test]
async fn after_sigkill_a_restart_resumes_and_converges() {
    let db = streaming_db("stream_crash").await;
    let mut child = db
        .replicator(&["run"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for i in 0..30 {
        db.sql(&format!(
            "UPDATE users SET username = 'u{i}' WHERE user_id = 1"
        ))
        .await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    for i in 30..40 {
        db.sql(&format!("INSERT INTO session_data (session_id, attribute_key, attribute_value) VALUES ('s1', 'a{i}', 'x')"))
            .await;
    }
    db.catch_up().await;
    db.assert_verified().await;
    assert_eq!(field(&db.session("s2").await, "username"), Some("u29"));
}

#[tokio::test]
async fn a_lost_namespace_is_rebuilt_from_state() {
    let db = streaming_db("stream_rebuild").await;
    // Redis forgets the namespace (as after a restart without persistence).
    let mut r = db.redis();
    for key in db.keys().await {
        let _: () = r.del(db.key(&key)).await.unwrap();
    }
    db.sql("UPDATE users SET email = 'after@x' WHERE user_id = 2")
        .await;
    let out = db.catch_up().await;
    assert!(
        stderr(&out).contains("marker key is missing"),
        "{}",
        stderr(&out)
    );
    db.assert_verified().await;
    assert_eq!(field(&db.session("s1").await, "attr_cart"), Some("[1]"));
    assert_eq!(field(&db.session("s3").await, "email"), Some("after@x"));
}

#[tokio::test]
async fn a_checkpoint_in_a_purged_binlog_is_a_clear_error_or_a_resnapshot() {
    let db = streaming_db("stream_purged").await;
    // Point the checkpoint at a binlog file the server no longer has.
    {
        let state = replicator::state::StateStore::open(&db.state_dir).unwrap();
        let mut cp = state.checkpoint().unwrap().unwrap();
        cp.position = replicator::position::BinlogPosition::parse("binlog.000000", 4).unwrap();
        state.commit(state.batch(), &cp).unwrap();
    }
    let out = db.run(&["run", "--exit-when-caught-up"]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("binlog file binlog.000000") && err.contains("--resnapshot-if-needed"),
        "{err}"
    );

    db.sql("UPDATE users SET username = 'fresh' WHERE user_id = 2")
        .await;
    db.run_ok(&["run", "--exit-when-caught-up", "--resnapshot-if-needed"])
        .await;
    assert_eq!(field(&db.session("s3").await, "username"), Some("fresh"));
    db.assert_verified().await;
}

#[tokio::test]
async fn a_clean_stop_leaves_no_write_ahead_log_to_replay() {
    let db = streaming_db("stream_clean_stop").await;
    db.change("UPDATE users SET email = 'stop@x' WHERE user_id = 2")
        .await;
    // RocksDB's write-ahead logs are its `*.log` files (its own log is `LOG`).
    let unflushed: Vec<_> = std::fs::read_dir(&db.state_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .filter(|path| std::fs::metadata(path).unwrap().len() > 0)
        .collect();
    assert!(unflushed.is_empty(), "write-ahead logs left: {unflushed:?}");
}
