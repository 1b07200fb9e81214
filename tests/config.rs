//! Bad configuration: each is one clear error line and a non-zero exit.

mod common;

use common::servers::PrivateServices;
use common::{stderr, TestDb};

/// The `error:` lines of a failed run, which must be exactly one.
async fn one_error(db: &TestDb, args: &[&str]) -> String {
    one_error_with(db, args, &[]).await
}

async fn one_error_with(db: &TestDb, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = db.run_with(args, env).await;
    let err = stderr(&out);
    assert!(!out.status.success(), "{args:?} succeeded:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    lines[0].to_string()
}

#[tokio::test]
async fn wrong_binlog_settings_are_named() {
    let mariadb = PrivateServices::mariadb("");
    let db = TestDb::on(mariadb.servers(), "binlog_settings").await;
    db.sql("SET GLOBAL binlog_format = 'STATEMENT'").await;
    let line = one_error(&db, &["snapshot"]).await;
    assert!(
        line.contains("binlog_format is STATEMENT") && line.contains("binlog_format=ROW"),
        "{line}"
    );
    db.sql("SET GLOBAL binlog_format = 'ROW'; SET GLOBAL binlog_row_image = 'MINIMAL'")
        .await;
    let line = one_error(&db, &["run"]).await;
    assert!(
        line.contains("binlog_row_image is MINIMAL") && line.contains("binlog_row_image=FULL"),
        "{line}"
    );
}

#[tokio::test]
async fn binary_logging_off_is_named() {
    let mariadb = PrivateServices::mariadb("--skip-log-bin");
    let db = TestDb::on(mariadb.servers(), "binlog_off").await;
    let line = one_error(&db, &["snapshot"]).await;
    assert!(
        line.contains("binary logging is off") && line.contains("log_bin"),
        "{line}"
    );
}

#[tokio::test]
async fn a_server_id_of_the_server_or_zero_is_refused() {
    let db = TestDb::new("server_id").await;
    let server_id: Vec<u32> = db.query("SELECT @@server_id").await;
    let own = server_id[0].to_string();
    let line = one_error(&db, &["run", "--server-id", &own]).await;
    assert!(
        line.contains(&format!("SERVER_ID {own} cannot be used")) && line.contains("server's own"),
        "{line}"
    );
    let line = one_error(&db, &["run", "--server-id", "0"]).await;
    assert!(line.contains("0 is not a valid replica id"), "{line}");
}

#[tokio::test]
async fn missing_privileges_are_named() {
    let db = TestDb::new("privileges").await;
    let user = format!("np{}", db.server_id);
    db.sql(&format!(
        "CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'pw';
         GRANT SELECT ON `{db}`.* TO '{user}'@'127.0.0.1';
         GRANT REPLICATION CLIENT ON *.* TO '{user}'@'127.0.0.1';",
        db = db.name
    ))
    .await;
    let url = format!(
        "mysql://{user}:pw@127.0.0.1:{}/{}",
        url::Url::parse(&db.mysql_url()).unwrap().port().unwrap(),
        db.name
    );
    db.run_ok(&["snapshot", "--mysql-url", &url]).await;
    // No REPLICATION SLAVE: the binlog stream is refused.
    db.sql(
        "INSERT INTO users (user_id, username, email, password_hash) VALUES (1, 'a', 'a@x', 'h')",
    )
    .await;
    let line = one_error(&db, &["run", "--exit-when-caught-up", "--mysql-url", &url]).await;
    assert!(
        line.contains("lacks a privilege") && line.contains("REPLICATION SLAVE"),
        "{line}"
    );
    // No SELECT on the database.
    db.sql(&format!(
        "REVOKE SELECT ON `{}`.* FROM '{user}'@'127.0.0.1'",
        db.name
    ))
    .await;
    let line = one_error(&db, &["snapshot", "--mysql-url", &url]).await;
    assert!(
        line.contains("no privilege on database") && line.contains("GRANT SELECT"),
        "{line}"
    );
    db.sql(&format!("DROP USER '{user}'@'127.0.0.1'")).await;
}

#[tokio::test]
async fn a_wrong_redis_password_is_a_clear_error() {
    let redis = PrivateServices::redis("--requirepass right-one");
    let db = TestDb::new("redis_password").await;
    let url = format!("redis://:wrong-one@127.0.0.1:{}/0", redis.redis_port);
    let out = db.run_with(&["snapshot"], &[("REDIS_URL", &url)]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot connect to Redis at redis://:***@127.0.0.1"),
        "{err}"
    );
    assert!(err.to_lowercase().contains("password"), "{err}");
    assert!(
        !err.contains("wrong-one") && !err.contains("right-one"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unusable_state_dir_is_refused() {
    let db = TestDb::new("state_dir").await;
    let file = std::env::temp_dir().join(format!("{}-not-a-dir", db.name));
    std::fs::write(&file, b"x").unwrap();
    let inside = file.join("state");
    let line = one_error(&db, &["snapshot", "--state-dir", inside.to_str().unwrap()]).await;
    assert!(
        line.contains("cannot create the state directory") && line.contains("STATE_DIR"),
        "{line}"
    );
    std::fs::remove_file(&file).unwrap();

    // A state directory of another source database.
    let other = TestDb::new("state_dir_other").await;
    other
        .run_ok(&["snapshot", "--state-dir", db.state_dir.to_str().unwrap()])
        .await;
    let line = one_error(&db, &["run"]).await;
    assert!(
        line.contains(&format!(
            "holds the state of database `{}`, not `{}`",
            other.name, db.name
        )),
        "{line}"
    );
}

/// A cluster node that serves no slot (its cluster is not formed, or is
/// down), and a list of nodes that are no cluster: one line each.
#[tokio::test]
async fn a_redis_cluster_that_is_down_or_absent_is_one_clear_error() {
    let redis = PrivateServices::redis("--cluster-enabled yes");
    let db = TestDb::new("redis_cluster_url").await;
    let url = format!("redis://127.0.0.1:{}", redis.redis_port);
    for command in ["snapshot", "verify"] {
        let out = db.run_with(&[command], &[("REDIS_URL", &url)]).await;
        let err = stderr(&out);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains("Redis Cluster") && err.contains("is down"),
            "{err}"
        );
        assert!(!err.contains("MOVED") && err.len() < 1_000, "{err}");
    }
    let shared = &db.servers.redis_url;
    let list = format!("{shared},{shared}");
    let line = one_error_with(&db, &["snapshot"], &[("REDIS_URL", &list)]).await;
    assert!(line.contains("not nodes of a Redis Cluster"), "{line}");
}
