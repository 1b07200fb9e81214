//! What operators rely on: /metrics, /healthz, /readyz, `status`, JSON
//! logs, and the Docker compose file.

mod common;

use std::time::Duration;

use common::{http_get as get, sample, stderr, TestDb};

const FIXTURE: &str = "
INSERT INTO users (user_id, username, email, password_hash) VALUES (1, 'ann', 'ann@x', 'h');
INSERT INTO user_sessions (session_id, user_id, created_at, expires_at) VALUES ('s1', 1, NOW(), NOW() + INTERVAL 1 DAY);
";

/// The sidecar with its endpoints on a free port; returns it and the port.
fn sidecar_with_metrics(db: &TestDb) -> (tokio::process::Child, u16) {
    db.sidecar_with_metrics(&[], std::process::Stdio::null())
}

#[tokio::test]
async fn metrics_move_when_rows_are_applied() {
    let db = TestDb::new("metrics").await;
    db.sql(FIXTURE).await;
    let (mut child, port) = sidecar_with_metrics(&db);
    db.wait_for("/readyz to answer 200", Duration::from_secs(30), || async {
        matches!(get(port, "/readyz").await, Some((200, _)))
    })
    .await;
    let (code, before) = get(port, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    for series in [
        "replicator_groups_total",
        "replicator_checkpoint_offset_bytes",
        "replicator_checkpoint_file_sequence",
        "replicator_lag_seconds",
        "replicator_snapshot_rows{table=\"users\"}",
        "replicator_snapshot_rows_estimated{table=\"user_sessions\"}",
        "replicator_reconnects_total{target=\"mysql\"}",
        "replicator_redis_errors_total{kind=\"transient\"}",
    ] {
        assert!(
            sample(&before, series).is_some(),
            "{series} missing in:\n{before}"
        );
    }
    let updates = "replicator_row_events_total{table=\"users\",kind=\"update\"}";
    let hsets = "replicator_redis_commands_total{command=\"HSET\"}";
    let offset = "replicator_checkpoint_offset_bytes";
    db.sql("UPDATE users SET username = 'bea' WHERE user_id = 1")
        .await;
    db.wait_for(
        "the update in /metrics",
        Duration::from_secs(30),
        || async {
            let (_, m) = get(port, "/metrics").await.unwrap();
            sample(&m, updates) == Some(1.0)
        },
    )
    .await;
    let (_, after) = get(port, "/metrics").await.unwrap();
    assert!(sample(&after, hsets).unwrap() > sample(&before, hsets).unwrap_or(0.0));
    assert!(sample(&after, offset).unwrap() > sample(&before, offset).unwrap());
    assert!(sample(&after, "replicator_transactions_total").unwrap() >= 1.0);
    assert_eq!(get(port, "/healthz").await.unwrap().0, 200);
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

#[tokio::test]
async fn readyz_is_503_while_a_backlog_is_applied_and_200_after() {
    let db = TestDb::new("readyz").await;
    db.sql(FIXTURE).await;
    db.catch_up().await;
    // A backlog written "an hour ago", 100 transactions of 250 rows at a
    // time: more of it keeps coming until /readyz has been seen behind, so
    // that how fast the stream applies it does not decide the test.
    let rounds = std::cell::Cell::new(0);
    let backlog = || {
        let round = rounds.get();
        rounds.set(round + 1);
        let mut sql = String::from("SET TIMESTAMP = UNIX_TIMESTAMP() - 3600;");
        for t in 0..100 {
            sql += &format!(
                "INSERT INTO session_data (session_id, attribute_key, attribute_value)
                 SELECT 's1', CONCAT('b{round}_{t}_', seq), 'v' FROM seq_1_to_250;"
            );
        }
        sql + "SET TIMESTAMP = DEFAULT;"
    };
    db.sql(&backlog()).await;
    let (mut child, port) = sidecar_with_metrics(&db);
    let saw_backlog = std::cell::Cell::new(false);
    let what = "/readyz 503 while a backlog streams, then 200";
    db.wait_for(what, Duration::from_secs(120), || {
        let (saw, db, backlog) = (&saw_backlog, &db, &backlog);
        async move {
            match get(port, "/readyz").await {
                Some((200, _)) if saw.get() => true,
                Some((503, body)) if body.contains(", streaming,") && body.contains("lag 3") => {
                    saw.set(true);
                    false
                }
                Some(_) if !saw.get() => {
                    db.sql(&backlog()).await;
                    false
                }
                _ => false,
            }
        }
    })
    .await;
    assert!(
        saw_backlog.get(),
        "never saw /readyz 503 with an hour of lag while streaming"
    );
    let (_, body) = get(port, "/readyz").await.unwrap();
    assert!(body.contains("lag 0.0s"), "{body}");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    db.assert_verified().await;
}

#[tokio::test]
async fn status_reports_the_committed_position_of_a_known_change() {
    // A server of its own: no other test moves its binlog.
    let mariadb = common::servers::PrivateServices::mariadb("");
    let db = TestDb::on(mariadb.servers(), "status").await;
    db.sql(FIXTURE).await;
    db.catch_up().await;
    db.sql("UPDATE users SET username = 'known' WHERE user_id = 1")
        .await;
    let server: Vec<(String, u64, String, String)> = db.query("SHOW MASTER STATUS").await;
    db.catch_up().await;
    let out = db.run_ok(&["status", "--json"]).await;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        status["checkpoint"]["position"]["file"],
        server[0].0.as_str()
    );
    assert_eq!(status["checkpoint"]["position"]["offset"], server[0].1);
    assert_eq!(status["behind"]["files"], 0);
    let text = common::stdout(&db.run_ok(&["status"]).await);
    assert!(
        text.contains(&format!("checkpoint     {}:{}", server[0].0, server[0].1)),
        "{text}"
    );
    assert!(text.contains("snapshot taken"), "{text}");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let db = TestDb::new("json_logs").await;
    db.sql(FIXTURE).await;
    let out = db
        .run_ok(&["run", "--exit-when-caught-up", "--log-format", "json"])
        .await;
    let text = stderr(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 3, "{text}");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
    }
}

#[test]
fn compose_file_parses_and_its_mysql_meets_the_prerequisites() {
    use replicator::model::Table;
    use replicator::source::{check_settings, Flavor, ServerSettings};
    let compose = common::compose_file();
    let mysql = &compose["services"]["mysql"];
    assert_eq!(mysql["image"].as_str(), Some("mysql:8.4"));
    let flags: Vec<&str> = mysql["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let flag = |name: &str| {
        flags
            .iter()
            .find_map(|f| f.strip_prefix(&format!("--{name}=")))
            .map(str::to_string)
    };
    let settings = ServerSettings {
        version: "8.4".into(),
        flavor: Flavor::MySql,
        log_bin: flag("log-bin").is_some(),
        binlog_format: flag("binlog-format").unwrap_or_default(),
        binlog_row_image: flag("binlog-row-image").unwrap_or_default(),
        server_id: flag("server-id").unwrap().parse().unwrap(),
        database: "sessions".into(),
        tables: Table::ALL.map(|t| t.name().to_string()).to_vec(),
    };
    check_settings(&settings).unwrap();
    assert_eq!(flag("binlog-row-metadata").as_deref(), Some("FULL"));
    assert_eq!(flag("gtid-mode").as_deref(), Some("ON"));
    // The sidecar: health-checked on /readyz, with a server id of its own.
    let sidecar = &compose["services"]["replicator"];
    let check: Vec<&str> = sidecar["healthcheck"]["test"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(check.iter().any(|a| a.ends_with("/readyz")), "{check:?}");
    assert_ne!(
        sidecar["environment"]["SERVER_ID"].as_str(),
        Some(settings.server_id.to_string().as_str())
    );
    assert_eq!(
        compose["services"]["redis"]["image"].as_str(),
        Some("redis:7")
    );
    // The init scripts exist.
    for volume in mysql["volumes"].as_sequence().unwrap() {
        let host = volume.as_str().unwrap().split(':').next().unwrap();
        let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/docker")).join(host);
        assert!(path.exists(), "{} is missing", path.display());
    }
}

/// With --hold-on-stop, a stream stopped on an event it cannot apply stays
/// up, not ready, and says so in /metrics; a stop signal then ends it with
/// the error.
#[tokio::test]
async fn hold_on_stop_keeps_a_stopped_stream_visible_until_told_to_stop() {
    let db = TestDb::new("hold_on_stop").await;
    db.sql(FIXTURE).await;
    db.catch_up().await;
    db.sql("SET SESSION binlog_format = 'STATEMENT'; UPDATE users SET email = 'st@x' WHERE user_id = 1")
        .await;
    let log = db.log_path("hold");
    let stderr = std::process::Stdio::from(std::fs::File::create(&log).unwrap());
    let (mut child, port) = db.sidecar_with_metrics(&["--hold-on-stop"], stderr);
    db.wait_for(
        "replicator_stream_stopped 1",
        Duration::from_secs(30),
        || async {
            get(port, "/metrics")
                .await
                .is_some_and(|(_, m)| sample(&m, "replicator_stream_stopped") == Some(1.0))
        },
    )
    .await;
    assert!(child.try_wait().unwrap().is_none(), "it exited");
    let (code, body) = get(port, "/readyz").await.unwrap();
    assert_eq!(code, 503);
    assert!(body.contains("stopped"), "{body}");
    let (_, metrics) = get(port, "/metrics").await.unwrap();
    assert_eq!(sample(&metrics, "replicator_ready"), Some(0.0));
    assert_eq!(sample(&metrics, "replicator_stream_stops_total"), Some(1.0));

    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits on SIGTERM")
        .unwrap();
    assert!(!status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("--hold-on-stop"), "{text}");
    assert!(
        text.contains("error: ") && text.contains("`users`"),
        "{text}"
    );
    assert_eq!(
        db.field("s1", "email").await.as_deref(),
        Some("ann@x"),
        "applied past the stop"
    );
}
