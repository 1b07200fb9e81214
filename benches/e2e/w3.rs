//! W3: commit-to-visible lag while the source commits at a fixed rate.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::data::live_session_ids;
use super::env::{admin, replicator_command, Args, Env, PREFIX};
use super::measure::{peak_rss, quantile};
use super::Row;
use mysql_async::prelude::Queryable;

pub async fn w3(env: &Env, args: &Args, rows: &mut Vec<Row>) {
    // Live sessions to write to, each at most a few times.
    let ids = live_session_ids(env, Some(20_000)).await;
    let mut child = replicator_command(env, &["run"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let client = redis::Client::open(env.redis_url.as_str()).unwrap();
    let mut control = client.get_multiplexed_async_connection().await.unwrap();
    // Wait until the sidecar has caught up: a marker write shows up.
    let mut conn = admin(env, Some(&env.db)).await;
    conn.exec_drop(
        "UPDATE user_sessions SET user_agent = 'w3-start' WHERE session_id = ?",
        (&ids[0],),
    )
    .await
    .unwrap();
    let key0 = format!("{PREFIX}session:{}", ids[0]);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let ua: Option<String> = redis::cmd("HGET")
            .arg(&key0)
            .arg("user_agent")
            .query_async(&mut control)
            .await
            .unwrap();
        if ua.as_deref() == Some("w3-start") {
            break;
        }
        assert!(Instant::now() < deadline, "the sidecar did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Each write puts a unique value in one session's user_agent; a poller
    // reads the pending sessions back (one pipeline every millisecond) and
    // takes the time when the value shows up.
    let sent: Arc<Mutex<HashMap<String, (String, Instant)>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (sent, latencies, client, stop) = (
            sent.clone(),
            latencies.clone(),
            client.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut reader = client.get_multiplexed_async_connection().await.unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let pending: Vec<(String, String)> = sent
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(v, (k, _))| (v.clone(), k.clone()))
                    .collect();
                if !pending.is_empty() {
                    let mut pipe = redis::pipe();
                    for (_, key) in &pending {
                        pipe.cmd("HGET").arg(key).arg("user_agent");
                    }
                    let values: Vec<Option<String>> =
                        pipe.query_async(&mut reader).await.unwrap_or_default();
                    let now = Instant::now();
                    let mut sent = sent.lock().unwrap();
                    for ((value, _), found) in pending.iter().zip(values) {
                        if found.as_deref() == Some(value.as_str()) {
                            if let Some((_, at)) = sent.remove(value) {
                                latencies.lock().unwrap().push(now - at);
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };

    let writers = 8;
    let per_writer = args.rate / writers;
    let total = args.rate * args.seconds;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (ids, sent, env_admin, db) = (
            ids.clone(),
            sent.clone(),
            env.admin_url.clone(),
            env.db.clone(),
        );
        let count = total / writers;
        tasks.push(tokio::spawn(async move {
            let opts = mysql_async::OptsBuilder::from_opts(
                mysql_async::Opts::from_url(&env_admin).unwrap(),
            )
            .db_name(Some(db));
            let mut conn = mysql_async::Conn::new(opts).await.unwrap();
            let interval = Duration::from_secs_f64(1.0 / per_writer as f64);
            let mut next = Instant::now();
            for i in 0..count {
                let n = (i * writers + w) as usize;
                let value = format!("w3-{n}");
                let id = &ids[n % ids.len()];
                tokio::time::sleep_until(next.into()).await;
                next += interval;
                // Timed from just before the commit, so that the watcher
                // never sees a change before it is recorded.
                let key = format!("{PREFIX}session:{id}");
                sent.lock()
                    .unwrap()
                    .insert(value.clone(), (key, Instant::now()));
                conn.exec_drop(
                    "UPDATE user_sessions SET user_agent = ? WHERE session_id = ?",
                    (&value, id),
                )
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let achieved = total as f64 / started.elapsed().as_secs_f64();
    // Let the last writes arrive.
    let settle = Instant::now() + Duration::from_secs(5);
    while !sent.lock().unwrap().is_empty() && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = watcher.await;
    let peak = child.id().and_then(peak_rss).unwrap_or(0);
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort();
    let seen = lat.len();
    let pct = |p: f64| quantile(&lat, p);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    rows.push(Row(
        format!("W3 lag at {} tx/s", args.rate),
        format!(
            "{achieved:.0} tx/s for {}s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({seen} of {total} observed), peak RSS {peak} MiB",
            args.seconds,
            ms(pct(0.50)),
            ms(pct(0.99)),
            ms(lat.last().copied().unwrap_or_default())
        ),
    ));
}
