//! Every binlog event that can change the four tables is applied as MySQL
//! applied it, or the stream stops with an error naming the event and the
//! checkpoint before it: TRUNCATE, XA, savepoints, deletes without foreign
//! key checks, statement-format DML, DDL the model cannot follow, checksum
//! changes, a Redis out of memory. Each against the real MariaDB and Redis,
//! each checking the exact Redis state afterwards (`verify`: every field,
//! every TTL, every index, no extra key).

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::servers::PrivateServices;
use common::{stderr, TestDb};
use replicator::model::Xid;
use replicator::state::StateStore;

/// Users 1 (with preferences) and 2; sessions s1, s2 of user 1, s3 of
/// user 2, with attributes.
const FIXTURE: &str = "
INSERT INTO users (user_id, username, email, password_hash) VALUES
  (1, 'ann', 'ann@x', 'h'), (2, 'bob', 'bob@x', 'h');
INSERT INTO user_preferences (user_id, theme, language, notifications_enabled) VALUES
  (1, 'dark', 'en', TRUE), (2, 'light', 'de', FALSE);
INSERT INTO user_sessions (session_id, user_id, ip_address, user_agent, created_at, expires_at, last_activity_at) VALUES
  ('s1', 1, '192.0.2.1', 'ua1', '2024-01-01 00:00:00', '2037-01-01 00:00:00', '2024-01-01 00:00:00'),
  ('s2', 1, '192.0.2.2', 'ua2', '2024-01-01 00:00:00', '2037-02-01 00:00:00', NULL),
  ('s3', 2, NULL, NULL, '2024-01-01 00:00:00', '2037-03-01 00:00:00', NULL);
INSERT INTO session_data (session_id, attribute_key, attribute_value) VALUES
  ('s1', 'cart', '[1]'), ('s1', 'lang', 'en'), ('s3', 'cart', '[3]');
";

async fn fixture_on(servers: common::Servers, test: &str) -> TestDb {
    let db = TestDb::on(servers, test).await;
    db.sql(FIXTURE).await;
    db.catch_up().await;
    db
}

async fn fixture(test: &str) -> TestDb {
    fixture_on(common::Servers::shared(), test).await
}

fn has(h: &std::collections::BTreeMap<String, String>, field: &str) -> bool {
    h.contains_key(field)
}

/// `run` stops: one `error:` line naming the event and what to do, a
/// non-zero exit, and the checkpoint where it was.
async fn assert_stops(db: &TestDb, sql: &str, expect: &[&str]) -> String {
    let before = db.checkpoint().await;
    db.sql(sql).await;
    let out = db.run(&["run", "--exit-when-caught-up"]).await;
    let text = stderr(&out);
    assert!(!out.status.success(), "run should stop:\n{text}");
    let error = text
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line in:\n{text}"));
    for word in expect
        .iter()
        .chain(&["cannot be applied exactly", "fresh snapshot"])
    {
        assert!(error.contains(word), "`{word}` not in: {error}");
    }
    assert!(!text.contains("panicked"), "{text}");
    assert!(
        error.contains(&format!("the binlog event at {}:", before.0)),
        "the error names the event's position: {error}"
    );
    error.to_string()
}

#[tokio::test]
async fn truncate_of_each_source_table_is_applied_without_cascade() {
    let db = fixture("truncate").await;
    db.sql("TRUNCATE TABLE session_data").await;
    let text = stderr(&db.catch_up().await);
    assert!(
        text.contains("TRUNCATE TABLE session_data") && text.contains("rows=3"),
        "the log says what it did: {text}"
    );
    db.assert_verified().await;
    let s1 = db.session("s1").await;
    assert!(!has(&s1, "attr_cart") && !has(&s1, "attr_lang"), "{s1:?}");
    assert_eq!(s1["username"], "ann");

    db.change("SET FOREIGN_KEY_CHECKS = 0; TRUNCATE TABLE user_preferences")
        .await;
    assert!(!has(&db.session("s3").await, "theme"));

    // A parent table can be emptied only with the checks off: its children
    // stay, as orphans, and keep their hashes without the user's fields.
    db.sql("INSERT INTO session_data (session_id, attribute_key, attribute_value) VALUES ('s2', 'k', 'v')")
        .await;
    db.change("SET FOREIGN_KEY_CHECKS = 0; TRUNCATE TABLE users")
        .await;
    let s2 = db.session("s2").await;
    assert!(!has(&s2, "username") && s2["attr_k"] == "v", "{s2:?}");

    db.change("SET FOREIGN_KEY_CHECKS = 0; TRUNCATE TABLE user_sessions")
        .await;
    assert!(
        db.keys().await.iter().all(|k| !k.starts_with("session:")),
        "{:?}",
        db.keys().await
    );
    // The attributes MySQL kept come back with a session of their id.
    db.change("SET FOREIGN_KEY_CHECKS = 0; \
         INSERT INTO user_sessions (session_id, user_id, created_at, expires_at) VALUES ('s2', 1, NOW(), '2037-01-01')",
    )
    .await;
    assert_eq!(db.session("s2").await["attr_k"], "v");
}

#[tokio::test]
async fn a_delete_without_foreign_key_checks_does_not_cascade() {
    let db = fixture("no_fk_delete").await;
    db.change("SET FOREIGN_KEY_CHECKS = 0; DELETE FROM users WHERE user_id = 1")
        .await;
    let s1 = db.session("s1").await;
    assert!(!has(&s1, "username") && !has(&s1, "email"), "{s1:?}");
    assert_eq!(
        (s1["user_id"].as_str(), s1["theme"].as_str()),
        ("1", "dark")
    );
    assert_eq!(
        db.index(1).await.len(),
        2,
        "the index still lists both sessions"
    );

    // An update of such an orphan session writes the whole hash.
    db.change("UPDATE user_sessions SET ip_address = '10.0.0.9' WHERE session_id = 's1'")
        .await;
    let s1 = db.session("s1").await;
    for field in [
        "user_id",
        "expires_at",
        "session_created_at",
        "attr_cart",
        "ip_address",
    ] {
        assert!(has(&s1, field), "{field} missing: {s1:?}");
    }
    // A session deleted with the checks off keeps its data in MySQL.
    db.change("SET FOREIGN_KEY_CHECKS = 0; DELETE FROM user_sessions WHERE session_id = 's3'")
        .await;
    db.change("INSERT INTO user_sessions (session_id, user_id, created_at, expires_at) VALUES ('s3', 2, NOW(), '2037-05-01')",
    )
    .await;
    assert_eq!(db.session("s3").await["attr_cart"], "[3]");
}

#[tokio::test]
async fn xa_counts_at_commit_never_at_prepare_or_after_rollback() {
    // A server of its own: an XA COMMIT names no database, so a transaction
    // held prepared here would reach every other test's stream.
    let mariadb = PrivateServices::mariadb("");
    let db = fixture_on(mariadb.servers(), "xa").await;
    db.xa_prepare(
        "xa1",
        "INSERT INTO session_data (session_id, attribute_key, attribute_value) VALUES ('s2', 'held', 'yes'); \
         UPDATE users SET email = 'ann@xa' WHERE user_id = 1",
    )
    .await;
    db.xa_prepare("xa2", "DELETE FROM user_sessions WHERE session_id = 's3'")
        .await;
    // Prepared only: nothing shows, and catching up does not wait for them.
    db.catch_up().await;
    assert!(!has(&db.session("s2").await, "attr_held"));
    assert_eq!(db.session("s1").await["email"], "ann@x");
    assert!(db.session("s3").await.contains_key("user_id"));
    // Another transaction commits meanwhile, in its own order.
    db.change("UPDATE users SET username = 'bobby' WHERE user_id = 2")
        .await;
    assert_eq!(db.session("s3").await["username"], "bobby");

    db.change("XA COMMIT 'xa1'").await;
    assert_eq!(db.session("s2").await["attr_held"], "yes");
    assert_eq!(db.session("s1").await["email"], "ann@xa");

    db.change("XA ROLLBACK 'xa2'").await;
    assert_eq!(db.session("s3").await["username"], "bobby");

    // One phase: committed at once.
    db.change(
        "XA START 'xa3'; UPDATE user_preferences SET theme = 'blue' WHERE user_id = 1; \
         XA END 'xa3'; XA COMMIT 'xa3' ONE PHASE",
    )
    .await;
    assert_eq!(db.session("s1").await["theme"], "blue");
}

#[tokio::test]
async fn a_prepared_xa_survives_a_sigkill_of_the_sidecar() {
    let mariadb = PrivateServices::mariadb("");
    let db = fixture_on(mariadb.servers(), "xa_sigkill").await;
    let mut child = db
        .replicator(&["run"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    db.xa_prepare(
        "held",
        "INSERT INTO session_data (session_id, attribute_key, attribute_value) VALUES ('s1', 'xa', '1')",
    )
    .await;
    // A later commit shows: the checkpoint has moved past the prepare.
    db.sql("UPDATE users SET username = 'after' WHERE user_id = 2")
        .await;
    db.wait_for(
        "the commit after the prepare",
        Duration::from_secs(20),
        || async { db.field("s3", "username").await.as_deref() == Some("after") },
    )
    .await;
    let server: Vec<(String, u64, String, String)> = db.query("SHOW MASTER STATUS").await;
    let past = (sequence(&server[0].0), server[0].1);
    db.wait_for(
        "the checkpoint past the prepare",
        Duration::from_secs(20),
        || async {
            let (file, offset) = db.checkpoint().await;
            (sequence(&file), offset) >= past
        },
    )
    .await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    assert!(db.field("s1", "attr_xa").await.is_none());
    db.change("XA COMMIT 'held'").await;
    assert_eq!(db.field("s1", "attr_xa").await.as_deref(), Some("1"));
}

#[tokio::test]
async fn rollback_to_savepoint_undoes_what_followed_it() {
    let db = fixture("savepoint").await;
    db.sql("CREATE TABLE audit (id INT PRIMARY KEY AUTO_INCREMENT, note TEXT) ENGINE=MyISAM")
        .await;
    // A non-transactional table in the transaction: MariaDB then logs the
    // rows rolled back, followed by ROLLBACK TO.
    db.change("BEGIN;
         INSERT INTO session_data (session_id, attribute_key, attribute_value) VALUES ('s2', 'kept', '1');
         SAVEPOINT sp1;
         UPDATE users SET email = 'gone@x' WHERE user_id = 1;
         INSERT INTO session_data (session_id, attribute_key, attribute_value) VALUES ('s2', 'gone', '1');
         INSERT INTO audit (note) VALUES ('x');
         ROLLBACK TO SAVEPOINT sp1;
         UPDATE users SET username = 'kept' WHERE user_id = 2;
         COMMIT",
    )
    .await;
    let s2 = db.session("s2").await;
    assert!(has(&s2, "attr_kept") && !has(&s2, "attr_gone"), "{s2:?}");
    assert_eq!(s2["email"], "ann@x");
    assert_eq!(db.session("s3").await["username"], "kept");
}

#[tokio::test]
async fn statement_format_dml_on_a_source_table_stops_and_resnapshot_recovers() {
    let db = fixture("statement_dml").await;
    // Statement-format DML elsewhere is unrelated.
    db.sql("CREATE TABLE other (id INT PRIMARY KEY, v INT)")
        .await;
    db.change("SET SESSION binlog_format = 'STATEMENT'; INSERT INTO other VALUES (1, 1); UPDATE other SET v = 2",
    )
    .await;

    let error = assert_stops(
        &db,
        "SET SESSION binlog_format = 'STATEMENT'; UPDATE users SET email = 'st@x' WHERE user_id = 1",
        &["`users`", "UPDATE", "binlog_format=ROW"],
    )
    .await;
    assert!(error.contains("statement"), "{error}");
    // Stopped again at the next start: never past it.
    let out = db.run(&["run", "--exit-when-caught-up"]).await;
    assert!(!out.status.success());
    assert_eq!(db.field("s1", "email").await.as_deref(), Some("ann@x"));

    // The way out: a fresh snapshot, after which Redis matches.
    let out = db.catch_up_with(&["--resnapshot-if-needed"]).await;
    assert!(stderr(&out).contains("fresh snapshot"), "{}", stderr(&out));
    db.assert_verified().await;
    assert_eq!(db.field("s1", "email").await.as_deref(), Some("st@x"));

    for (sql, word) in [
        ("SET SESSION binlog_format = 'STATEMENT'; INSERT INTO session_data (session_id, attribute_key) VALUES ('s2', 'k')", "INSERT"),
        ("SET SESSION binlog_format = 'STATEMENT'; DELETE FROM user_sessions WHERE session_id = 's3'", "DELETE"),
    ] {
        assert_stops(&db, sql, &[word]).await;
        db.catch_up_with(&["--resnapshot-if-needed"]).await;
        db.assert_verified().await;
    }
}

#[tokio::test]
async fn ddl_the_model_cannot_follow_stops() {
    let db = fixture("ddl_stop").await;
    // A column the model does not read: followed.
    db.change("ALTER TABLE users DROP COLUMN last_login_at")
        .await;
    assert_stops(
        &db,
        "ALTER TABLE user_sessions CHANGE ip_address ip VARCHAR(45)",
        &["`user_sessions`", "`ip_address`"],
    )
    .await;
    // While streaming: the table is gone from under the sidecar.
    let other = fixture("ddl_stop_rename").await;
    let log = other.log_path("rename");
    let mut child = other.sidecar(&[], &log);
    other
        .wait_for("streaming", Duration::from_secs(20), || async {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("streaming the binlog"))
        })
        .await;
    other
        .sql("RENAME TABLE session_data TO session_data_old")
        .await;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the sidecar stops by itself")
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{text}");
    let error = text
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(
        error.contains("RENAME TABLE") && error.contains("`session_data`"),
        "{text}"
    );
}

#[tokio::test]
async fn a_checksum_change_while_streaming_keeps_the_file_names() {
    // A server of its own: the setting is global.
    let mariadb = PrivateServices::mariadb("");
    let db = fixture_on(mariadb.servers(), "checksum").await;
    let mut child = db
        .replicator(&["run"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for (n, setting) in ["NONE", "CRC32", "NONE"].into_iter().enumerate() {
        db.sql(&format!("SET GLOBAL binlog_checksum = '{setting}'"))
            .await;
        let name = format!("c{n}");
        db.sql(&format!(
            "UPDATE users SET username = '{name}' WHERE user_id = 1"
        ))
        .await;
        db.wait_for(
            &format!("the change after binlog_checksum={setting}"),
            Duration::from_secs(20),
            || async { db.field("s1", "username").await.as_deref() == Some(name.as_str()) },
        )
        .await;
        db.sql("FLUSH BINARY LOGS").await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    // The next start resumes from a well-formed file name.
    db.change("UPDATE users SET username = 'last' WHERE user_id = 1")
        .await;
    let (file, _) = db.checkpoint().await;
    let server: Vec<(String, u64, String, String)> = db.query("SHOW MASTER STATUS").await;
    assert_eq!(file, server[0].0);
    db.sql("SET GLOBAL binlog_checksum = 'CRC32'").await;
}

#[tokio::test]
async fn redis_out_of_memory_is_an_outage_not_a_crash() {
    let redis = PrivateServices::redis("");
    let db = fixture_on(redis.servers(), "redis_oom").await;
    let port = common::servers::free_port();
    let log = db.log_path("oom");
    let addr = format!("127.0.0.1:{port}");
    let mut child = db.sidecar(&["--metrics-addr", &addr], &log);
    let mut r = db.redis();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .query_async(&mut r)
        .await
        .unwrap();
    db.sql("UPDATE users SET username = 'full' WHERE user_id = 1")
        .await;
    db.wait_for("the outage in the log", Duration::from_secs(20), || async {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("OOM"))
    })
    .await;
    let healthz = common::http_get(port, "/healthz")
        .await
        .map(|(code, _)| code);
    assert!(
        healthz.is_some_and(|code| code != 200),
        "/healthz while Redis is full"
    );
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query_async(&mut r)
        .await
        .unwrap();
    db.wait_for(
        "the change after memory is freed",
        Duration::from_secs(30),
        || async { db.field("s1", "username").await.as_deref() == Some("full") },
    )
    .await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("panicked"), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("error:")), "{text}");
    db.assert_verified().await;
}

#[tokio::test]
async fn an_xa_commit_of_a_transaction_prepared_before_the_snapshot_stops() {
    let mariadb = PrivateServices::mariadb("");
    let db = TestDb::on(mariadb.servers(), "xa_before_snapshot").await;
    db.sql(FIXTURE).await;
    db.xa_prepare(
        "early",
        "INSERT INTO session_data (session_id, attribute_key, attribute_value) VALUES ('s1', 'early', '1')",
    )
    .await;
    let out = db.catch_up().await; // the snapshot cannot see the prepared rows
    assert!(
        stderr(&out).contains("XA transactions are prepared"),
        "{}",
        stderr(&out)
    );
    assert_stops(
        &db,
        "XA COMMIT 'early'",
        &["XA COMMIT", "prepared before the snapshot"],
    )
    .await;
    db.catch_up_with(&["--resnapshot-if-needed"]).await;
    db.assert_verified().await;
    assert_eq!(db.field("s1", "attr_early").await.as_deref(), Some("1"));
}

/// The sequence number of a binlog file name.
fn sequence(file: &str) -> u64 {
    file.rsplit('.')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_row_image_without_the_model_columns_stops() {
    let db = fixture("row_image").await;
    assert_stops(
        &db,
        "SET SESSION binlog_row_image = 'MINIMAL'; UPDATE users SET email = 'min@x' WHERE user_id = 1",
        &["`users`", "binlog_row_image=FULL"],
    )
    .await;
    db.catch_up_with(&["--resnapshot-if-needed"]).await;
    db.assert_verified().await;
    // NOBLOB leaves out an unchanged TEXT column the model reads.
    assert_stops(
        &db,
        "SET SESSION binlog_row_image = 'NOBLOB'; UPDATE user_sessions SET ip_address = '10.1.1.1' WHERE session_id = 's1'",
        &["`user_sessions`", "binlog_row_image=FULL"],
    )
    .await;
}

#[tokio::test]
async fn a_compressed_binlog_is_read_like_a_plain_one() {
    // MariaDB's log_bin_compress: queries and row data of more than ten
    // bytes are written compressed.
    let mariadb = PrivateServices::mariadb("--log-bin-compress=ON --log-bin-compress-min-len=10");
    let db = fixture_on(mariadb.servers(), "compressed").await;
    let compressed: Vec<(String, String)> =
        db.query("SHOW VARIABLES LIKE 'log_bin_compress'").await;
    assert_eq!(compressed[0].1, "ON");
    db.assert_verified().await;
    db.change("UPDATE users SET username = 'a rather longer name to compress', email = 'long@x' WHERE user_id = 1;
         INSERT INTO session_data (session_id, attribute_key, attribute_value) VALUES ('s2', 'blob', REPEAT('xyz', 500));
         DELETE FROM user_sessions WHERE session_id = 's3'",
    )
    .await;
    assert_eq!(
        db.session("s2").await["username"],
        "a rather longer name to compress"
    );
    assert_eq!(db.session("s2").await["attr_blob"].len(), 1500);
    let server: Vec<(String, u64, String, String)> = db.query("SHOW MASTER STATUS").await;
    let events: Vec<mysql_async::Row> = db
        .query(&format!("SHOW BINLOG EVENTS IN '{}'", server[0].0))
        .await;
    let kinds: Vec<String> = events.iter().filter_map(|e| e.get("Event_type")).collect();
    for kind in [
        "Query_compressed",
        "Write_rows_compressed_v1",
        "Update_rows_compressed_v1",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
    db.change("TRUNCATE TABLE session_data").await;
    assert!(!has(&db.session("s1").await, "attr_cart"));
    assert_stops(
        &db,
        "SET SESSION binlog_format = 'STATEMENT'; UPDATE users SET email = 'statement@x' WHERE user_id = 2",
        &["`users`", "UPDATE"],
    )
    .await;
}

#[tokio::test]
async fn a_held_xa_survives_a_fresh_snapshot() {
    let mariadb = PrivateServices::mariadb("");
    let db = fixture_on(mariadb.servers(), "xa_resnapshot").await;
    db.xa_prepare(
        "kept",
        "INSERT INTO session_data (session_id, attribute_key, attribute_value) VALUES ('s2', 'kept', '1')",
    )
    .await;
    db.catch_up().await;
    assert_eq!(held(&db), [Xid::from_parts(1, b"kept", b"").0]);
    // A fresh snapshot (as after a purged binlog) cannot see the prepared
    // rows, but keeps them held: the commit after it applies them.
    let out = db.run_ok(&["snapshot"]).await;
    assert!(
        !stderr(&out).contains("XA transactions are prepared"),
        "{}",
        stderr(&out)
    );
    db.change("XA COMMIT 'kept'").await;
    assert_eq!(db.field("s2", "attr_kept").await.as_deref(), Some("1"));

    // One resolved before a snapshot is forgotten by it.
    db.xa_prepare(
        "gone",
        "INSERT INTO session_data (session_id, attribute_key, attribute_value) VALUES ('s2', 'gone', '1')",
    )
    .await;
    db.catch_up().await;
    assert_eq!(held(&db), [Xid::from_parts(1, b"gone", b"").0]);
    db.sql("XA ROLLBACK 'gone'").await;
    db.run_ok(&["snapshot"]).await;
    assert!(
        held(&db).is_empty(),
        "the snapshot forgets it: {:?}",
        held(&db)
    );
    db.catch_up().await;
    db.assert_verified().await;
    assert_eq!(db.field("s2", "attr_gone").await, None);
}

/// The ids of the XA transactions the test's state holds.
fn held(db: &TestDb) -> Vec<String> {
    StateStore::open_read_only(&db.state_dir)
        .and_then(|state| state.held_xa_ids())
        .unwrap()
}

#[tokio::test]
async fn a_stop_is_counted_and_resnapshot_if_needed_carries_on() {
    let db = fixture("stop_metric").await;
    let port = common::servers::free_port();
    let addr = format!("127.0.0.1:{port}");
    let log = db.log_path("stop_metric");
    let mut child = db.sidecar(&["--resnapshot-if-needed", "--metrics-addr", &addr], &log);
    db.wait_for("streaming", Duration::from_secs(20), || async {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("streaming the binlog"))
    })
    .await;
    db.sql("SET SESSION binlog_format = 'STATEMENT'; UPDATE users SET email = 'st@x' WHERE user_id = 1")
        .await;
    db.wait_for("the fresh snapshot", Duration::from_secs(30), || async {
        db.field("s1", "email").await.as_deref() == Some("st@x")
    })
    .await;
    let metrics = common::http_get(port, "/metrics").await.unwrap().1;
    assert_eq!(
        common::sample(&metrics, "replicator_stream_stops_total"),
        Some(1.0),
        "{metrics}"
    );
    // It carries on streaming after the snapshot.
    db.sql("UPDATE users SET username = 'after' WHERE user_id = 2")
        .await;
    db.wait_for(
        "a change after the snapshot",
        Duration::from_secs(20),
        || async { db.field("s3", "username").await.as_deref() == Some("after") },
    )
    .await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("Taking a fresh snapshot instead"), "{text}");
    db.assert_verified().await;
}
