//! `replicator verify` catches each kind of difference (tamper tests).

mod common;

use common::{stdout, TestDb};
use redis::AsyncCommands;

const FIXTURE: &str = "
INSERT INTO users (user_id, username, email, password_hash) VALUES (201, 'fa', 'fa@x', 'x'), (202, 'fb', 'fb@x', 'x');
INSERT INTO user_preferences (user_id, theme) VALUES (201, 'dark');
INSERT INTO user_sessions (session_id, user_id, created_at, expires_at) VALUES
  ('s1', 201, '2024-01-01 00:00:00', '2037-01-01 00:00:00'),
  ('s2', 201, '2024-01-01 00:00:00', '2037-02-01 00:00:00'),
  ('s3', 202, '2024-01-01 00:00:00', '2037-03-01 00:00:00');
INSERT INTO session_data (session_id, attribute_key, attribute_value) VALUES ('s1', 'cart', '[]');
";

async fn verify_json(db: &TestDb) -> (i32, serde_json::Value) {
    let out = db.run(&["verify", "--json"]).await;
    let code = out.status.code().unwrap();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), common::stderr(&out)));
    (code, report)
}

/// Applies a tamper, expects verify to exit 1 naming `kind` in the count
/// `counter`, then re-snapshots so the next tamper starts clean.
async fn expect_caught(db: &TestDb, counter: &str, kind: &str, tamper: redis::Pipeline) {
    let mut r = db.redis();
    let () = tamper.query_async(&mut r).await.unwrap();
    let (code, report) = verify_json(db).await;
    assert_eq!(code, 1, "{counter}: {report:#}");
    assert_eq!(report["matched"], false);
    assert!(
        report[counter].as_u64().unwrap() >= 1,
        "{counter}: {report:#}"
    );
    let kinds: Vec<&str> = report["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&kind), "{kind} not among {kinds:?}");
    db.run_ok(&["snapshot"]).await;
    assert_eq!(
        verify_json(db).await.0,
        0,
        "re-snapshot after {counter} restores a match"
    );
}

#[tokio::test]
async fn verify_catches_every_kind_of_difference() {
    let db = TestDb::new("verify_tamper").await;
    db.sql(FIXTURE).await;
    db.run_ok(&["snapshot"]).await;
    let (code, report) = verify_json(&db).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["expected"], 3);
    assert_eq!(report["present"], 3);

    let s1 = db.key("session:s1");
    let idx = db.key("user:201:sessions");

    let mut p = redis::pipe();
    p.hset(&s1, "username", "mallory").ignore();
    expect_caught(&db, "differing", "field", p).await;

    let mut p = redis::pipe();
    p.hset(&s1, "bogus", "1").ignore();
    expect_caught(&db, "differing", "field", p).await;

    let mut p = redis::pipe();
    p.persist(&s1).ignore();
    expect_caught(&db, "differing", "ttl", p).await;

    let mut p = redis::pipe();
    p.del(&s1).ignore();
    expect_caught(&db, "missing", "missing", p).await;

    let mut p = redis::pipe();
    p.hset(db.key("session:ghost"), "user_id", "1").ignore();
    expect_caught(&db, "extra", "extra", p).await;

    let mut p = redis::pipe();
    p.zadd(&idx, "ghost", 2_000_000_000).ignore();
    expect_caught(&db, "index_differences", "index", p).await;

    let mut p = redis::pipe();
    p.zrem(&idx, "s2").ignore();
    expect_caught(&db, "index_differences", "index", p).await;

    let mut p = redis::pipe();
    p.hset(db.key("user:99:sessions"), "x", "y").ignore();
    expect_caught(&db, "extra", "extra", p).await;
}

#[tokio::test]
async fn verify_prints_a_verdict_and_samples() {
    let db = TestDb::new("verify_sample").await;
    db.load_sample_data().await;
    db.sql(FIXTURE).await;
    db.run_ok(&["snapshot"]).await;

    let out = db.run_ok(&["verify", "--sample", "5"]).await;
    let text = stdout(&out);
    assert!(
        text.starts_with("MATCH") && text.contains("random sample"),
        "{text}"
    );
    assert!(text.contains("expected sessions         5"), "{text}");

    let mut r = db.redis();
    let _: () = r.hset(db.key("session:s3"), "username", "x").await.unwrap();
    let out = db.run(&["verify"]).await;
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.starts_with("DIFFERENT") && text.contains("[username]"),
        "{text}"
    );
}
