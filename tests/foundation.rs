//! The CLI, the prerequisite check and the schema, against the real servers.

mod common;

use common::{stderr, TestDb};

fn replicator() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_replicator"));
    for var in [
        "MYSQL_URL",
        "REDIS_URL",
        "STATE_DIR",
        "KEY_PREFIX",
        "SERVER_ID",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

#[test]
fn every_subcommand_prints_help() {
    for sub in [
        None,
        Some("snapshot"),
        Some("run"),
        Some("verify"),
        Some("status"),
    ] {
        let mut cmd = replicator();
        cmd.env("MYSQL_URL", "mysql://u:topsecret@h:1/db");
        if let Some(sub) = sub {
            cmd.arg(sub);
        }
        let out = cmd.arg("--help").output().unwrap();
        // Help text is wrapped to the terminal: compare with white space folded.
        let text = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(out.status.success(), "{sub:?}: {text}");
        assert!(text.contains("Usage: replicator"), "{sub:?}: {text}");
        assert!(!text.contains("topsecret"), "help shows a secret: {text}");
        if matches!(sub, Some("snapshot" | "run" | "verify")) {
            assert!(
                text.contains("--mysql-url") && text.contains("[env: MYSQL_URL"),
                "{text}"
            );
            assert!(
                text.contains("--redis-url") && text.contains("--key-prefix"),
                "{text}"
            );
        }
        if sub == Some("run") {
            assert!(text.contains("[env: SERVER_ID"), "{text}");
        }
    }
}

#[tokio::test]
async fn unreachable_mysql_is_one_clear_line_without_the_password() {
    let db = TestDb::new("unreachable_mysql").await;
    let out = db
        .replicator(&["snapshot"])
        .env(
            "MYSQL_URL",
            "mysql://replicator:hunter2@127.0.0.1:1/whatever",
        )
        .output()
        .await
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot connect to MySQL at mysql://replicator:***@127.0.0.1:1/whatever"),
        "{err}"
    );
    assert!(err.contains("Check MYSQL_URL"), "{err}");
    assert!(
        !err.contains("hunter2") && !err.contains("panicked"),
        "{err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
}

#[tokio::test]
async fn unreachable_redis_is_a_clear_error() {
    let db = TestDb::new("unreachable_redis").await;
    let out = db
        .run_with(
            &["snapshot"],
            &[("REDIS_URL", "redis://:sesame@127.0.0.1:1/0")],
        )
        .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot connect to Redis at redis://:***@127.0.0.1:1/0"),
        "{err}"
    );
    assert!(
        !err.contains("sesame") && !err.contains("panicked"),
        "{err}"
    );
}

#[tokio::test]
async fn missing_tables_are_named() {
    let db = TestDb::empty("missing_tables").await;
    db.sql(
        "CREATE TABLE users (user_id INT PRIMARY KEY, username VARCHAR(255), email VARCHAR(255));
         CREATE TABLE user_sessions (session_id VARCHAR(255) PRIMARY KEY, user_id INT);",
    )
    .await;
    let out = db.run(&["verify"]).await;
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "verify exits 2 when it cannot check: {err}"
    );
    assert!(
        err.contains(&format!("table `{}`.`session_data` is missing", db.name)),
        "{err}"
    );
    assert!(err.contains("`user_preferences` is missing"), "{err}");
    assert!(!err.contains("`users` is missing"), "{err}");
    assert!(err.contains("load sql/schema.sql"), "{err}");
}

#[tokio::test]
async fn schema_and_sample_data_load() {
    let db = TestDb::new("sample_data_load").await;
    db.load_sample_data().await;
    let counts: Vec<(i64, i64, i64, i64)> = db
        .query(
            "SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM user_sessions), \
             (SELECT COUNT(*) FROM session_data), (SELECT COUNT(*) FROM user_preferences)",
        )
        .await;
    let (users, sessions, data, prefs) = counts[0];
    assert_eq!((users, sessions), (20, 40));
    assert!((60..=80).contains(&data), "{data}");
    assert!(prefs < users, "some users have no preferences row");
    let expired: Vec<i64> = db
        .query("SELECT COUNT(*) FROM user_sessions WHERE expires_at <= NOW()")
        .await;
    assert!(expired[0] > 0 && expired[0] < sessions);
}

#[tokio::test]
async fn server_settings_reach_the_check() {
    // The private server runs as the model requires; the decision on wrong
    // values is unit-tested in `source::prereq`.
    let db = TestDb::new("server_settings").await;
    let rows: Vec<(String, String, String)> = db
        .query("SELECT @@binlog_format, @@binlog_row_image, @@binlog_row_metadata")
        .await;
    assert_eq!(rows[0], ("ROW".into(), "FULL".into(), "FULL".into()));
}
