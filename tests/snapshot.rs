//! `replicator snapshot` against the real servers: the model of
//! `redis-model.md`, field by field.

mod common;

use std::collections::BTreeMap;

use common::{stdout, TestDb};
use redis::AsyncCommands;

/// Users 101 (with preferences) and 102 (without), and sessions with every
/// corner the model names. Timestamps are UTC (the harness's session is).
const FIXTURE: &str = "
INSERT INTO users (user_id, username, email, password_hash, created_at) VALUES
  (101, 'ünal', 'unal@example.com', 'x', '2024-01-01 00:00:00'),
  (102, 'nopref', 'np@example.com', 'x', '2024-01-01 00:00:00'),
  (103, 'nulls', 'nulls@example.com', 'x', '2024-01-01 00:00:00');
INSERT INTO user_preferences (user_id, theme, language, notifications_enabled) VALUES
  (101, 'dark', 'de', FALSE),
  (103, NULL, 'fr', NULL);
INSERT INTO user_sessions (session_id, user_id, ip_address, user_agent, created_at, expires_at, last_activity_at) VALUES
  ('s:1 ü', 101, '192.0.2.7', 'agent/1.0', '2024-01-02 03:04:05', '2037-06-01 12:00:00', '2024-01-02 03:05:00'),
  ('bare', 102, NULL, NULL, '2024-01-02 03:04:05', '2037-06-02 00:00:00', NULL),
  ('nullprefs', 103, '::1', 'x', '2024-01-02 03:04:05', '2037-06-02 00:00:00', '2024-01-02 03:04:05'),
  ('expired', 101, '192.0.2.8', 'old', '2020-01-01 00:00:00', '2020-01-02 00:00:00', NULL);
INSERT INTO session_data (session_id, attribute_key, attribute_value) VALUES
  ('s:1 ü', 'cart', '{\"items\":[1,2]}'),
  ('s:1 ü', 'emoji', '👋🎉 ok'),
  ('s:1 ü', 'empty', ''),
  ('s:1 ü', 'none', NULL),
  ('s:1 ü', 'big', REPEAT('x', 61440)),
  ('expired', 'cart', 'gone');
";

fn hash(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn snapshot_db(test: &str) -> TestDb {
    let db = TestDb::new(test).await;
    db.load_sample_data().await;
    db.sql(FIXTURE).await;
    db.run_ok(&["snapshot"]).await;
    db
}

#[tokio::test]
async fn sample_data_snapshot_verifies_and_a_chosen_session_is_exact() {
    let db = snapshot_db("snap_exact").await;
    let out = db.run_ok(&["verify"]).await;
    assert!(stdout(&out).starts_with("MATCH"), "{}", stdout(&out));

    let mut expected = hash(&[
        ("user_id", "101"),
        ("username", "ünal"),
        ("email", "unal@example.com"),
        ("ip_address", "192.0.2.7"),
        ("user_agent", "agent/1.0"),
        ("session_created_at", "2024-01-02T03:04:05Z"),
        ("last_activity_at", "2024-01-02T03:05:00Z"),
        ("expires_at", "2037-06-01T12:00:00Z"),
        ("theme", "dark"),
        ("language", "de"),
        ("notifications_enabled", "false"),
        ("attr_cart", "{\"items\":[1,2]}"),
        ("attr_emoji", "👋🎉 ok"),
        ("attr_empty", ""),
    ]);
    expected.insert("attr_big".into(), "x".repeat(61440));
    assert_eq!(db.session("s:1 ü").await, expected);
    assert_eq!(db.expire_time("session:s:1 ü").await, 2_127_470_400);
    assert_eq!(db.index(101).await, [("s:1 ü".to_string(), 2_127_470_400)]);
    assert_eq!(db.expire_time("user:101:sessions").await, 2_127_470_400);
}

#[tokio::test]
async fn absent_sources_and_nulls_leave_fields_out() {
    let db = snapshot_db("snap_nulls").await;
    // No preferences row: no theme, language, notifications_enabled.
    assert_eq!(
        db.session("bare").await,
        hash(&[
            ("user_id", "102"),
            ("username", "nopref"),
            ("email", "np@example.com"),
            ("session_created_at", "2024-01-02T03:04:05Z"),
            ("expires_at", "2037-06-02T00:00:00Z"),
        ])
    );
    // NULL theme and notifications_enabled: absent; language present.
    let nullprefs = db.session("nullprefs").await;
    assert_eq!(nullprefs.get("language").map(String::as_str), Some("fr"));
    assert!(!nullprefs.contains_key("theme") && !nullprefs.contains_key("notifications_enabled"));
    // NULL attribute value: no field.
    assert!(!db.session("s:1 ü").await.contains_key("attr_none"));
}

#[tokio::test]
async fn expired_sessions_have_no_key_and_no_index_member() {
    let db = snapshot_db("snap_expired").await;
    assert!(db.session("expired").await.is_empty());
    assert_eq!(db.expire_time("session:expired").await, -2);
    assert!(db.index(101).await.iter().all(|(m, _)| m != "expired"));
    // Every key of the namespace has a TTL.
    for key in db.keys().await {
        if key != "replicator:snapshot" {
            assert!(db.expire_time(&key).await > 0, "{key} has no TTL");
        }
    }
}

#[tokio::test]
async fn fractional_timestamps_are_written_with_six_digits() {
    let db = TestDb::new("snap_fraction").await;
    db.sql(
        "ALTER TABLE user_sessions MODIFY expires_at TIMESTAMP(6) NOT NULL,
                                  MODIFY last_activity_at TIMESTAMP(6) NULL;
         INSERT INTO users (user_id, username, email, password_hash) VALUES (1, 'a', 'a@x', 'x');
         INSERT INTO user_sessions (session_id, user_id, created_at, expires_at, last_activity_at)
           VALUES ('f', 1, '2024-01-01 00:00:00', '2037-06-01 12:00:00.250000', '2024-01-01 00:00:00.000000');",
    )
    .await;
    db.run_ok(&["snapshot"]).await;
    let h = db.session("f").await;
    assert_eq!(h["expires_at"], "2037-06-01T12:00:00.250000Z");
    assert_eq!(h["last_activity_at"], "2024-01-01T00:00:00Z");
    // Rounded up to the next whole second.
    assert_eq!(db.expire_time("session:f").await, 2_127_470_401);
}

#[tokio::test]
async fn a_non_utc_server_time_zone_changes_nothing() {
    let db = snapshot_db("snap_tz").await;
    let utc = db.session("s:1 ü").await;
    // The server's default for new sessions; the replicator sets its own.
    db.sql("SET GLOBAL time_zone = '+05:30'").await;
    let second = db.run(&["snapshot"]).await;
    db.sql("SET GLOBAL time_zone = 'SYSTEM'").await;
    assert!(second.status.success(), "{}", common::stderr(&second));
    assert_eq!(db.session("s:1 ü").await, utc);
    assert_eq!(db.expire_time("session:s:1 ü").await, 2_127_470_400);
}

#[tokio::test]
async fn a_second_snapshot_removes_stale_keys_and_nothing_outside_the_namespace() {
    let db = snapshot_db("snap_stale").await;
    let outside = format!("outside-{}:session:x", db.name);
    let mut r = db.redis();
    let _: () = r.set(&outside, "keep me").await.unwrap();
    assert!(!db.session("bare").await.is_empty());

    db.sql("DELETE FROM users WHERE user_id = 102; DELETE FROM user_sessions WHERE session_id = 'nullprefs';")
        .await;
    let out = db.run_ok(&["snapshot"]).await;
    assert!(
        stdout(&out).contains("stale keys removed         4"),
        "{}",
        stdout(&out)
    );

    let keys = db.keys().await;
    for gone in [
        "session:bare",
        "session:nullprefs",
        "user:102:sessions",
        "user:103:sessions",
    ] {
        assert!(
            !keys.contains(&gone.to_string()),
            "{gone} is left: {keys:?}"
        );
    }
    assert!(keys.contains(&"session:s:1 ü".to_string()));
    let kept: Option<String> = r.get(&outside).await.unwrap();
    assert_eq!(kept.as_deref(), Some("keep me"));
    let _: () = r.del(&outside).await.unwrap();
    assert!(stdout(&db.run_ok(&["verify"]).await).starts_with("MATCH"));
}

#[tokio::test]
async fn the_checkpoint_records_the_snapshot_position() {
    let db = snapshot_db("snap_checkpoint").await;
    let out = db.run_ok(&["status", "--json"]).await;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checkpoint = &status["checkpoint"];
    assert_eq!(checkpoint["snapshot"]["database"], db.name.as_str());
    assert!(checkpoint["position"]["file"]
        .as_str()
        .unwrap()
        .starts_with("binlog."));
    let offset = checkpoint["position"]["offset"].as_u64().unwrap();
    assert!(offset > 4);
    // MariaDB's GTID of that position, looked up while the tables were read.
    let file = checkpoint["position"]["file"].as_str().unwrap();
    let gtid: Vec<Option<String>> = db
        .query(&format!("SELECT BINLOG_GTID_POS('{file}', {offset})"))
        .await;
    assert_eq!(
        checkpoint["position"]["gtid"].as_str(),
        gtid[0].as_deref().filter(|g| !g.is_empty())
    );
    assert!(checkpoint["position"]["gtid"].is_string());
    let marker: String = db.redis().get(db.key("replicator:snapshot")).await.unwrap();
    assert_eq!(marker, checkpoint["snapshot"]["id"].as_str().unwrap());
}

#[tokio::test]
async fn a_rate_limited_snapshot_writes_the_same_model() {
    let db = snapshot_db("snap_rate").await;
    db.sql("DELETE FROM user_sessions WHERE session_id = 'bare'")
        .await;
    let out = db
        .run_ok_with(&["snapshot"], &[("SNAPSHOT_MAX_RATE", "500")])
        .await;
    let log = common::stderr(&out);
    assert!(log.contains("at most 500 commands/s"), "{log}");
    assert!(db.session("bare").await.is_empty(), "a stale key is left");
    assert!(stdout(&db.run_ok(&["verify"]).await).starts_with("MATCH"));

    // Never faster than the limit: at 40 commands/s (batches of 16, one of
    // them free), two commands a session take at least this long.
    let started = std::time::Instant::now();
    let out = db
        .run_ok_with(&["snapshot"], &[("SNAPSHOT_MAX_RATE", "40")])
        .await;
    let sessions: f64 = stdout(&out)
        .lines()
        .find_map(|l| l.trim().strip_prefix("sessions written"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap();
    let least = (2.0 * sessions - 16.0) / 40.0;
    assert!(least > 1.0, "{sessions} sessions");
    let took = started.elapsed().as_secs_f64();
    assert!(
        took >= least,
        "{took:.2}s for {sessions} sessions at 40 commands/s"
    );
    assert!(stdout(&db.run_ok(&["verify"]).await).starts_with("MATCH"));
}
