//! What the replicator survives: crashes at random instants, Redis and
//! MariaDB going away, purged binlogs, DDL, huge transactions, orphan rows
//! and zero dates. After each, Redis matches MySQL (`verify`).

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::crash::crash_trials;
use common::servers::{PrivateServices, Which};
use common::workload::Workload;
use common::{stderr, TestDb};
use redis::AsyncCommands;
use tokio::process::Child;

async fn field(db: &TestDb, session: &str, f: &str) -> Option<String> {
    db.field(session, f).await
}

#[tokio::test]
async fn crash_trials_short_series() {
    crash_trials(None, 6, 7).await;
}

/// The long series: `cargo test --test faults -- --ignored`, or set
/// CRASH_TRIALS and CRASH_SEED.
#[tokio::test]
#[ignore]
async fn crash_trials_long_series() {
    let trials = std::env::var("CRASH_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(50);
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(11);
    crash_trials(None, trials, seed).await;
}

/// A database with the workload's starting rows on `servers`, and the
/// sidecar running on it with its snapshot written.
async fn running_sidecar(
    servers: common::Servers,
    name: &str,
    seed: u64,
) -> (TestDb, Workload, std::path::PathBuf, Child) {
    let db = TestDb::on(servers, name).await;
    let mut work = Workload::new(seed);
    db.sql(&work.initial()).await;
    let log = db.log_path(name);
    let child = db.sidecar(&[], &log);
    // Keys appear while the snapshot is still writing: wait for its end.
    db.wait_for("the snapshot", Duration::from_secs(30), || async {
        std::fs::read_to_string(&log).is_ok_and(|text| text.contains("snapshot complete"))
    })
    .await;
    (db, work, log, child)
}

/// Kills the sidecar, checks Redis against MySQL, and returns the sidecar's log.
async fn stop_and_verify(db: &TestDb, mut child: Child, log: &std::path::Path) -> String {
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    db.assert_verified().await;
    std::fs::read_to_string(log).unwrap()
}

/// Waits until the watched session shows `username`.
async fn wait_for_watcher(db: &TestDb, username: &str, what: &str, timeout: Duration) {
    db.wait_for(what, timeout, || async {
        field(db, "watch", "username").await.as_deref() == Some(username)
    })
    .await;
}

/// Renames the watched user and waits until Redis shows it: everything
/// committed before the rename has been applied.
async fn rename_watched(db: &TestDb, username: &str, what: &str, timeout: Duration) {
    db.sql(&format!(
        "UPDATE users SET username = '{username}' WHERE user_id = 1000"
    ))
    .await;
    wait_for_watcher(db, username, what, timeout).await;
}

#[tokio::test]
async fn redis_restarted_without_persistence_is_rebuilt() {
    let redis = PrivateServices::redis("");
    let (db, _, log, child) = running_sidecar(redis.servers(), "redis_restart", 3).await;
    redis.down(Which::Redis);
    redis.up(Which::Redis); // empty: no persistence
    rename_watched(
        &db,
        "after-restart",
        "the rename to reach Redis",
        Duration::from_secs(30),
    )
    .await;
    // The group that carries the rename finds the marker gone and is
    // followed by the rebuild: the renamed field alone shows before it.
    db.wait_for(
        "the namespace to be rebuilt",
        Duration::from_secs(30),
        || async {
            std::fs::read_to_string(&log).is_ok_and(|text| text.contains("namespace rebuilt"))
        },
    )
    .await;
    let text = stop_and_verify(&db, child, &log).await;
    assert!(text.contains("rebuilding the namespace"), "{text}");
}

#[tokio::test]
async fn redis_unreachable_for_ten_seconds_under_load_loses_nothing() {
    // Append-only persistence: the data survives the outage.
    let redis = PrivateServices::redis("--appendonly yes --appendfsync always");
    let (db, mut work, log, child) = running_sidecar(redis.servers(), "redis_outage", 5).await;
    redis.down(Which::Redis);
    let outage = tokio::time::Instant::now();
    while outage.elapsed() < Duration::from_secs(10) {
        let _ = db.try_sql(&work.transaction()).await;
    }
    db.sql("UPDATE users SET username = 'marker' WHERE user_id = 1000")
        .await;
    redis.up(Which::Redis);
    wait_for_watcher(
        &db,
        "marker",
        "the replicator to catch up",
        Duration::from_secs(60),
    )
    .await;
    let text = stop_and_verify(&db, child, &log).await;
    assert_eq!(
        text.matches("Redis unavailable").count(),
        1,
        "logged once per incident:\n{text}"
    );
    assert!(text.contains("Redis is back"), "{text}");
    assert!(
        !text.contains("rebuilding the namespace"),
        "nothing was lost:\n{text}"
    );
}

/// `--redis-wait-replicas 1` on a standalone Redis with no replica: the
/// change is written, but the checkpoint does not count it until a replica
/// has it; once one attaches, the stream carries on by itself.
#[tokio::test]
async fn wait_replicas_holds_the_checkpoint_until_a_replica_has_the_writes() {
    let redis = PrivateServices::redis("");
    let db = TestDb::on(redis.servers(), "wait_replicas").await;
    db.sql(&Workload::new(6).initial()).await;
    db.catch_up().await;
    let before = db.checkpoint().await;
    let log = db.log_path("wait_replicas");
    let child = db.sidecar(
        &[
            "--redis-wait-replicas",
            "1",
            "--redis-wait-timeout-ms",
            "200",
        ],
        &log,
    );
    db.sql("UPDATE users SET username = 'waited' WHERE user_id = 1000")
        .await;
    db.wait_for_log(
        &log,
        "only 0 of the 1 Redis replicas",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        field(&db, "watch", "username").await.as_deref(),
        Some("waited")
    );
    assert_eq!(
        db.checkpoint().await,
        before,
        "the checkpoint moved without a replica"
    );

    let port = common::servers::free_port().to_string();
    // Its copy of the data (a full sync writes one) stays in the private
    // server's directory.
    let dir = redis.dir.to_string_lossy().into_owned();
    let mut replica = tokio::process::Command::new("redis-server")
        .args(["--port", &port, "--bind", "127.0.0.1", "--dir", &dir])
        .args(["--save", "", "--appendonly", "no"])
        .args(["--replicaof", "127.0.0.1", &redis.redis_port.to_string()])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    db.wait_for_log(&log, "Redis is back", Duration::from_secs(60))
        .await;
    db.wait_for(
        "the checkpoint to move",
        Duration::from_secs(30),
        || async { db.checkpoint().await != before },
    )
    .await;
    stop_and_verify(&db, child, &log).await;
    replica.kill().await.unwrap();
}

#[tokio::test]
async fn mariadb_restarted_mid_stream_is_reconnected() {
    let mariadb = PrivateServices::mariadb("");
    let db = TestDb::on(mariadb.servers(), "mariadb_restart").await;
    db.sql(&Workload::new(9).initial()).await;
    let log = db.log_path("mariadb-restart");
    let child = db.sidecar(&[], &log);
    rename_watched(&db, "before", "the first change", Duration::from_secs(30)).await;
    mariadb.down(Which::MariaDb);
    mariadb.up(Which::MariaDb);
    db.wait_for(
        "MariaDB to take writes again",
        Duration::from_secs(60),
        || async {
            db.try_sql("UPDATE users SET username = 'after' WHERE user_id = 1000")
                .await
                .is_ok()
        },
    )
    .await;
    wait_for_watcher(
        &db,
        "after",
        "the change after the restart",
        Duration::from_secs(60),
    )
    .await;
    let text = stop_and_verify(&db, child, &log).await;
    assert!(
        text.contains("the MySQL binlog stream unavailable"),
        "{text}"
    );
    assert!(text.contains("the MySQL binlog stream is back"), "{text}");
}

#[tokio::test]
async fn a_purged_binlog_is_named_and_resnapshot_recovers() {
    let mariadb = PrivateServices::mariadb("");
    let db = TestDb::on(mariadb.servers(), "purged").await;
    db.sql(&Workload::new(4).initial()).await;
    db.catch_up().await;
    let status: serde_json::Value =
        serde_json::from_slice(&db.run_ok(&["status", "--json"]).await.stdout).unwrap();
    let file = status["checkpoint"]["position"]["file"]
        .as_str()
        .unwrap()
        .to_string();
    db.sql("UPDATE users SET username = 'lost?' WHERE user_id = 1000; FLUSH BINARY LOGS;")
        .await;
    let current: Vec<(String, u64, String, String)> = db.query("SHOW MASTER STATUS").await;
    // MariaDB keeps a file until its binlog checkpoint has moved on: purge until it is gone.
    db.wait_for(
        "the old binlog to be purged",
        Duration::from_secs(30),
        || async {
            db.sql(&format!("PURGE BINARY LOGS TO '{}'", current[0].0))
                .await;
            let logs: Vec<(String, u64)> = db.query("SHOW BINARY LOGS").await;
            logs.iter().all(|(name, _)| *name != file)
        },
    )
    .await;

    let out = db.run(&["run", "--exit-when-caught-up"]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "the binlog file {file} of the checkpoint is no longer"
        )),
        "{err}"
    );
    assert!(err.contains("--resnapshot-if-needed"), "{err}");

    db.run_ok(&["run", "--exit-when-caught-up", "--resnapshot-if-needed"])
        .await;
    assert_eq!(
        field(&db, "watch", "username").await.as_deref(),
        Some("lost?")
    );
    db.assert_verified().await;
}

#[tokio::test]
async fn ddl_on_a_source_table_while_streaming() {
    let db = TestDb::new("ddl").await;
    db.sql(&Workload::new(2).initial()).await;
    let log = db.log_path("ddl");
    let mut child = db.sidecar(&[], &log);
    rename_watched(
        &db,
        "pre",
        "the change before the DDL",
        Duration::from_secs(30),
    )
    .await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    // While the replicator is down: changes before and after a column is
    // added in the middle and at the end of two tables, replayed on restart.
    db.sql(
        "UPDATE users SET username = 'old-shape' WHERE user_id = 1000;
         ALTER TABLE users ADD COLUMN nickname VARCHAR(20) NULL AFTER user_id;
         ALTER TABLE user_sessions ADD COLUMN device VARCHAR(20) NULL AFTER session_id, ADD COLUMN note TEXT NULL;
         UPDATE users SET username = 'new-shape', nickname = 'n' WHERE user_id = 1000;
         UPDATE user_sessions SET device = 'phone', user_agent = 'after-ddl' WHERE session_id = 'watch';",
    )
    .await;
    db.catch_up().await;
    assert_eq!(
        field(&db, "watch", "username").await.as_deref(),
        Some("new-shape")
    );
    assert_eq!(
        field(&db, "watch", "user_agent").await.as_deref(),
        Some("after-ddl")
    );
    let mut child = db.sidecar(&[], &log);
    db.sql("ALTER TABLE session_data ADD COLUMN flags INT NULL FIRST; INSERT INTO session_data (session_id, attribute_key, attribute_value, flags) VALUES ('watch', 'post', 'ddl', 1);").await;
    db.wait_for(
        "the change after the DDL",
        Duration::from_secs(30),
        || async { field(&db, "watch", "attr_post").await.as_deref() == Some("ddl") },
    )
    .await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    db.assert_verified().await;
}

#[tokio::test]
async fn column_names_from_information_schema_without_full_metadata() {
    let mariadb = PrivateServices::mariadb("--binlog-row-metadata=MINIMAL");
    let db = TestDb::on(mariadb.servers(), "minimal_metadata").await;
    db.sql(&Workload::new(6).initial()).await;
    db.catch_up().await;
    db.sql("UPDATE users SET username = 'minimal' WHERE user_id = 1000; INSERT INTO session_data (session_id, attribute_key, attribute_value) VALUES ('watch', 'm', 'x');").await;
    let out = db.catch_up().await;
    assert!(
        stderr(&out).contains("binlog_row_metadata=FULL"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        field(&db, "watch", "username").await.as_deref(),
        Some("minimal")
    );
    assert_eq!(field(&db, "watch", "attr_m").await.as_deref(), Some("x"));
    db.assert_verified().await;
}

/// Peak resident memory of a process, in MiB (`VmHWM`).
fn peak_rss_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

#[tokio::test]
async fn huge_transactions_are_applied_with_bounded_memory() {
    let db = TestDb::new("huge").await;
    db.sql(&Workload::new(8).initial()).await;
    let log = db.log_path("huge");
    let mut child = db.sidecar(&[], &log);
    let pid = child.id().unwrap();
    // 200,000 session_data rows in one transaction.
    db.sql(
        "INSERT INTO session_data (session_id, attribute_key, attribute_value)
         SELECT 'watch', CONCAT('bulk', seq), REPEAT('x', 20) FROM seq_1_to_200000;",
    )
    .await;
    // 100,000 expired sessions, then one DELETE of them all.
    db.sql(
        "INSERT INTO user_sessions (session_id, user_id, created_at, expires_at)
         SELECT CONCAT('exp', seq), 1 + seq % 30, NOW(), NOW() - INTERVAL 1 HOUR FROM seq_1_to_100000;",
    )
    .await;
    db.sql("DELETE FROM user_sessions WHERE session_id LIKE 'exp%'")
        .await;
    rename_watched(
        &db,
        "done",
        "both transactions to be applied",
        Duration::from_secs(240),
    )
    .await;
    let peak = peak_rss_mib(pid).unwrap();
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    println!("peak RSS while applying 200k + 100k row transactions: {peak} MiB");
    assert!(peak < 256, "peak RSS {peak} MiB");
    let fields: usize = redis::cmd("HLEN")
        .arg(db.key("session:watch"))
        .query_async(&mut db.redis())
        .await
        .unwrap();
    assert!(fields > 200_000, "{fields} fields");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("applying it in several steps"), "{text}");
    db.assert_verified().await;
}

#[tokio::test]
async fn orphan_rows_and_zero_dates_are_handled() {
    let db = TestDb::new("orphans").await;
    let orphans = "SET FOREIGN_KEY_CHECKS = 0, sql_mode = '';
        INSERT INTO user_sessions (session_id, user_id, created_at, expires_at) VALUES ('{p}nouser', 999, NOW(), NOW() + INTERVAL 1 DAY);
        INSERT INTO session_data (session_id, attribute_key, attribute_value) VALUES ('{p}nosession', 'k', 'v'), ('{p}nouser', 'k', 'v');
        INSERT INTO users (user_id, username, email, password_hash) VALUES ({u}, 'z{u}', 'z{u}@x', 'h');
        INSERT INTO user_sessions (session_id, user_id, created_at, expires_at, last_activity_at) VALUES ('{p}zero', {u}, NOW(), '0000-00-00 00:00:00', '0000-00-00 00:00:00');
        SET FOREIGN_KEY_CHECKS = 1;";
    // In the snapshot...
    db.sql(&orphans.replace("{p}", "a-").replace("{u}", "1"))
        .await;
    let out = db.catch_up().await;
    assert!(
        stderr(&out).contains("zero or unreadable date"),
        "{}",
        stderr(&out)
    );
    let h = db.session("a-nouser").await;
    assert_eq!(
        (h.get("user_id").map(String::as_str), h.get("username")),
        (Some("999"), None)
    );
    assert_eq!(h.get("attr_k").map(String::as_str), Some("v"));
    assert!(db.session("a-zero").await.is_empty());
    // ...and in the stream.
    db.sql(&orphans.replace("{p}", "b-").replace("{u}", "2"))
        .await;
    let out = db.catch_up().await;
    assert!(
        stderr(&out).contains("zero or unreadable date"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        db.session("b-nouser")
            .await
            .get("attr_k")
            .map(String::as_str),
        Some("v")
    );
    assert!(db.session("b-zero").await.is_empty() && db.session("b-nosession").await.is_empty());
    db.assert_verified().await;
}

#[tokio::test]
async fn a_namespace_lost_while_the_snapshot_writes_fails_it_without_a_checkpoint() {
    let db = TestDb::new("snapshot_lost").await;
    // Enough sessions that the snapshot writes in many batches.
    db.sql(
        "INSERT INTO users (user_id, username, email, password_hash)
           SELECT seq, CONCAT('u', seq), CONCAT('u', seq, '@x'), 'x' FROM seq_1_to_3000;
         INSERT INTO user_sessions (session_id, user_id, expires_at)
           SELECT CONCAT('s', LPAD(seq, 6, '0')), 1 + seq % 3000, NOW() + INTERVAL 1 DAY
           FROM seq_1_to_30000;
         INSERT INTO session_data (session_id, attribute_key, attribute_value)
           SELECT CONCAT('s', LPAD(seq DIV 3 + 1, 6, '0')), CONCAT('k', seq % 3), 'v'
           FROM seq_0_to_89999;",
    )
    .await;
    let child = db
        .replicator(&["snapshot"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Redis loses the namespace (here only its marker, as a restart without
    // persistence would) once sessions are being written.
    let mut r = db.redis();
    let (marker, first) = (db.key("replicator:snapshot"), db.key("session:s000001"));
    db.wait_for(
        "the snapshot to write sessions",
        Duration::from_secs(60),
        || {
            let mut r = r.clone();
            let keys = [marker.clone(), first.clone()];
            async move { r.exists::<_, u32>(&keys).await.unwrap() == 2 }
        },
    )
    .await;
    let _: () = r.del(&marker).await.unwrap();

    let out = child.wait_with_output().await.unwrap();
    assert!(!out.status.success(), "the snapshot cannot succeed");
    assert!(
        stderr(&out).contains("Redis lost the namespace while the snapshot was writing it"),
        "{}",
        stderr(&out)
    );
    let status = db.run(&["status"]).await;
    assert!(
        common::stdout(&status).contains("no checkpoint")
            || stderr(&status).contains("no checkpoint"),
        "no checkpoint is written: {}{}",
        common::stdout(&status),
        stderr(&status)
    );
    // The next snapshot starts again, and completes.
    db.run_ok(&["snapshot"]).await;
    db.assert_verified().await;
}

#[tokio::test]
async fn a_key_of_another_type_stops_streaming_with_redis_error_and_loses_nothing() {
    let db = TestDb::new("wrongtype").await;
    db.sql(&Workload::new(2).initial()).await;
    db.catch_up().await;
    let before: serde_json::Value =
        serde_json::from_slice(&db.run_ok(&["status", "--json"]).await.stdout).unwrap();
    // Something else wrote a string where a session hash belongs.
    let key = db.key("session:watch");
    let mut r = db.redis();
    let () = redis::cmd("SET")
        .arg(&key)
        .arg("not a hash")
        .query_async(&mut r)
        .await
        .unwrap();
    db.sql("UPDATE users SET username = 'renamed' WHERE user_id = 1000")
        .await;

    let out = db.run(&["run", "--exit-when-caught-up"]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("WRONGTYPE"), "{err}");
    let after: serde_json::Value =
        serde_json::from_slice(&db.run_ok(&["status", "--json"]).await.stdout).unwrap();
    assert_eq!(
        after["checkpoint"]["position"],
        before["checkpoint"]["position"]
    );

    // The foreign write destroyed the session's hash: once it is removed, a
    // snapshot writes the hash whole again, and streaming goes on from there.
    let () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut r)
        .await
        .unwrap();
    db.run_ok(&["snapshot"]).await;
    db.sql("UPDATE user_sessions SET user_agent = 'after' WHERE session_id = 'watch'")
        .await;
    db.catch_up().await;
    let watch = db.session("watch").await;
    assert_eq!(
        (watch["username"].as_str(), watch["user_agent"].as_str()),
        ("renamed", "after")
    );
    db.assert_verified().await;
}
