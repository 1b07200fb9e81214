//! The benchmark's database, generated with `LOAD DATA` and kept for the
//! next run.

use std::io::Write;
use std::time::Instant;

use mysql_async::prelude::Queryable;
use rand::{Rng, SeedableRng};

use super::env::{admin, Args, Env, ATTRS_PER_SESSION, SESSIONS_PER_USER};

/// Sessions that stay live for the benchmark's run (more than an hour
/// left), at most `limit`.
pub async fn live_session_ids(env: &Env, limit: Option<usize>) -> Vec<String> {
    let mut conn = admin(env, Some(&env.db)).await;
    let mut sql = "SELECT session_id FROM user_sessions WHERE expires_at > NOW() + INTERVAL 1 HOUR"
        .to_string();
    if let Some(limit) = limit {
        sql += &format!(" LIMIT {limit}");
    }
    conn.query(sql).await.unwrap()
}

pub async fn generate(env: &Env, args: &Args) {
    let mut conn = admin(env, None).await;
    let expected = args.users * SESSIONS_PER_USER;
    let existing: Option<u64> = conn
        .query_first(format!("SELECT COUNT(*) FROM `{}`.user_sessions", env.db))
        .await
        .ok()
        .flatten();
    if existing == Some(expected) {
        eprintln!("reusing database {} ({expected} sessions)", env.db);
        return;
    }
    eprintln!("generating database {} with LOAD DATA ...", env.db);
    let started = Instant::now();
    conn.query_drop(format!(
        "DROP DATABASE IF EXISTS `{db}`; CREATE DATABASE `{db}` CHARACTER SET utf8mb4;
         GRANT SELECT ON `{db}`.* TO 'replicator'@'127.0.0.1';",
        db = env.db
    ))
    .await
    .unwrap();
    let mut conn = admin(env, Some(&env.db)).await;
    let schema =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/schema.sql")).unwrap();
    conn.query_drop(schema).await.unwrap();

    let now = chrono::Utc::now().timestamp();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let file =
        |name: &str| std::io::BufWriter::new(std::fs::File::create(env.work.join(name)).unwrap());
    let (mut users, mut prefs, mut sessions, mut data) = (
        file("users.tsv"),
        file("prefs.tsv"),
        file("sessions.tsv"),
        file("data.tsv"),
    );
    for u in 1..=args.users {
        writeln!(
            users,
            "{u}\tuser{u}\tuser{u}@example.com\t$argon2id$v=19$m=65536,t=3,p=4$0123456789abcdef"
        )
        .unwrap();
        if u % 10 != 0 {
            writeln!(
                prefs,
                "{u}\t{}\ten\t{}",
                ["light", "dark"][(u % 2) as usize],
                u % 3 != 0
            )
            .unwrap();
        }
        for k in 0..SESSIONS_PER_USER {
            let sid = format!("{u:x}-{k}-{:016x}", rng.random::<u64>());
            let expires = if k % 5 == 0 {
                now - 3600
            } else {
                now + rng.random_range(3_600..30 * 86_400)
            };
            writeln!(
                sessions,
                "{sid}\t{u}\t198.51.100.{}\tMozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0\t{}\t{expires}\t{}",
                u % 250,
                now - 86_400,
                now - 60
            )
            .unwrap();
            for a in 0..ATTRS_PER_SESSION {
                writeln!(data, "{sid}\ta{a}\t{{\"items\":[{{\"sku\":\"SKU-{u}\",\"qty\":{a}}}],\"currency\":\"EUR\"}}").unwrap();
            }
        }
    }
    drop((users, prefs, sessions, data));
    let path = |name: &str| env.work.join(name).display().to_string();
    conn.query_drop(format!(
        "SET unique_checks = 0, foreign_key_checks = 0;
         LOAD DATA INFILE '{}' INTO TABLE users (user_id, username, email, password_hash);
         LOAD DATA INFILE '{}' INTO TABLE user_preferences (user_id, theme, language, @n) SET notifications_enabled = (@n = 'true');
         LOAD DATA INFILE '{}' INTO TABLE user_sessions (session_id, user_id, ip_address, user_agent, @c, @e, @l)
           SET created_at = FROM_UNIXTIME(@c), expires_at = FROM_UNIXTIME(@e), last_activity_at = FROM_UNIXTIME(@l);
         LOAD DATA INFILE '{}' INTO TABLE session_data (session_id, attribute_key, attribute_value);
         ANALYZE TABLE users, user_preferences, user_sessions, session_data;",
        path("users.tsv"),
        path("prefs.tsv"),
        path("sessions.tsv"),
        path("data.tsv")
    ))
    .await
    .unwrap();
    eprintln!("generated in {:.0}s", started.elapsed().as_secs_f64());
}
