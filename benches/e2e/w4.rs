//! W4: reading one session, as MySQL's four-table join and as Redis's
//! `HGETALL`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::data::live_session_ids;
use super::env::{admin, Args, Env, PREFIX};
use super::measure::quantile;
use super::Row;

pub async fn w4(env: &Env, args: &Args, rows: &mut Vec<Row>) {
    let mut ids = live_session_ids(env, None).await;
    let mut conn = admin(env, Some(&env.db)).await;
    ids.shuffle(&mut rand::rngs::StdRng::seed_from_u64(4));
    ids.truncate(args.reads);
    let client = redis::Client::open(env.redis_url.as_str()).unwrap();
    let mut r = client.get_multiplexed_async_connection().await.unwrap();
    let join = conn
        .prep(
            "SELECT s.session_id, s.user_id, u.username, u.email, s.ip_address, s.user_agent, s.created_at,
                    s.last_activity_at, s.expires_at, p.theme, p.language, p.notifications_enabled,
                    d.attribute_key, d.attribute_value
             FROM user_sessions s JOIN users u ON u.user_id = s.user_id
             LEFT JOIN user_preferences p ON p.user_id = s.user_id
             LEFT JOIN session_data d ON d.session_id = s.session_id
             WHERE s.session_id = ? AND s.expires_at > NOW()",
        )
        .await
        .unwrap();
    let (mut mysql, mut redis_t) = (Vec::new(), Vec::new());
    for id in &ids {
        let t = Instant::now();
        let rows: Vec<mysql_async::Row> = conn.exec(&join, (id,)).await.unwrap();
        mysql.push(t.elapsed());
        assert!(!rows.is_empty());
        let t = Instant::now();
        let h: HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
            .arg(format!("{PREFIX}session:{id}"))
            .query_async(&mut r)
            .await
            .unwrap();
        redis_t.push(t.elapsed());
        assert!(!h.is_empty(), "{id} missing in Redis");
    }
    let summary = |mut v: Vec<Duration>| {
        v.sort();
        let p = |q: f64| quantile(&v, q).as_secs_f64() * 1000.0;
        format!("p50 {:.2} ms, p99 {:.2} ms", p(0.5), p(0.99))
    };
    rows.push(Row(
        "W4 read one session".into(),
        format!(
            "MySQL four-table join {}; Redis HGETALL {} ({} sessions)",
            summary(mysql),
            summary(redis_t),
            ids.len()
        ),
    ));
}
