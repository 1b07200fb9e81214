//! W2: catching up with a backlog of row changes over the four tables.

use mysql_async::prelude::Queryable;
use replicator::state::StateStore;

use super::env::{admin, Args, Env};
use super::measure::{measure, redis_usage};
use super::Row;

/// The W2 backlog: a mix over the four tables, in transactions of about
/// 1,000 rows. Returns the row changes written.
pub async fn backlog(env: &Env, args: &Args) -> u64 {
    let mut conn = admin(env, Some(&env.db)).await;
    let users = args.users;
    let per_tx = 100; // users per transaction: about 1,000 session rows
    let mut written = 0u64;
    let mut round = 0u64;
    while written < args.changes {
        let from = (round * per_tx) % users + 1;
        let to = (from + per_tx - 1).min(users);
        let sql = match round % 6 {
            0 => format!("UPDATE user_sessions SET last_activity_at = NOW() WHERE user_id BETWEEN {from} AND {to}"),
            1 => format!(
                "INSERT INTO session_data (session_id, attribute_key, attribute_value)
                 SELECT session_id, 'w2', 'x' FROM user_sessions WHERE user_id BETWEEN {from} AND {to}
                 ON DUPLICATE KEY UPDATE attribute_value = 'x2'"
            ),
            2 => format!(
                "UPDATE session_data d JOIN user_sessions s ON s.session_id = d.session_id
                 SET d.attribute_value = CONCAT('v', {round}) WHERE s.user_id BETWEEN {from} AND {to} AND d.attribute_key = 'a0'"
            ),
            3 => format!("UPDATE users SET email = CONCAT('w2-', {round}, '-', user_id, '@x') WHERE user_id BETWEEN {from} AND {} ", (from + 999).min(users)),
            4 => format!("UPDATE user_preferences SET theme = CONCAT('t', {round}) WHERE user_id BETWEEN {from} AND {}", (from + 999).min(users)),
            _ => format!(
                "DELETE d FROM session_data d JOIN user_sessions s ON s.session_id = d.session_id
                 WHERE s.user_id BETWEEN {from} AND {to} AND d.attribute_key = 'w2'"
            ),
        };
        conn.query_drop(&sql).await.unwrap();
        written += conn.affected_rows();
        round += 1;
    }
    written
}

pub async fn w2(env: &Env, args: &Args, rows: &mut Vec<Row>) {
    if StateStore::open_read_only(&env.state_dir)
        .ok()
        .and_then(|s| s.checkpoint().ok().flatten())
        .is_none()
    {
        measure(env, &["snapshot"]).await;
    }
    let changes = backlog(env, args).await;
    let (redis_cpu, redis_commands) = redis_usage(env).await;
    let run = measure(env, &["run", "--exit-when-caught-up"]).await;
    let (redis_cpu_after, redis_commands_after) = redis_usage(env).await;
    let secs = run.wall.as_secs_f64();
    rows.push(Row(
        "W2 catch-up".into(),
        format!(
            "{changes} row events in {secs:.1} s: {:.0} events/s, peak RSS {} MiB",
            changes as f64 / secs,
            run.peak
        ),
    ));
    // What bounds it: the CPU time of the two cores that each side took.
    let redis_secs = redis_cpu_after - redis_cpu;
    rows.push(Row(
        "W2 CPU".into(),
        format!(
            "replicator {:.1} s, Redis {redis_secs:.1} s for {} commands ({:.1} per row event), of {:.1} s on 2 cores",
            run.cpu,
            redis_commands_after - redis_commands,
            (redis_commands_after - redis_commands) as f64 / changes as f64,
            2.0 * secs
        ),
    ));
    // Redis's own ceiling: the events/s it could take with a core to itself
    // and nothing else to wait for, at the CPU time these commands cost it.
    rows.push(Row(
        "limit: Redis's CPU".into(),
        format!(
            "at most {:.0} events/s with a whole core; W2 reached {:.0}% of that",
            changes as f64 / redis_secs,
            100.0 * redis_secs / secs
        ),
    ));
}
