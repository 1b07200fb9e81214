//! End-to-end benchmark on the local services (`scripts/services start`):
//!
//!   scripts/bench                   # 100k users, 1M sessions
//!   scripts/bench --users 10000     # a smaller database
//!
//! W1 snapshot, the `redis-cli --pipe` limit of W1's own commands, W2
//! catch-up of a mixed backlog, W3 commit-to-visible lag at a fixed rate, W4
//! reading a session from MySQL (the four-table join) and from Redis. Prints
//! one table. The database `bench_{users}` is generated with LOAD DATA and
//! kept for the next run; Redis database 9 belongs to the benchmark.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use mysql_async::prelude::Queryable;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use replicator::model::{Keys, Timestamp};
use replicator::sink::pipeline;
use replicator::snapshot::model_batches;
use replicator::state::StateStore;

#[derive(Parser, Debug)]
struct Args {
    /// Users; each has 10 sessions (a fifth expired) of 3 attributes; 90% have preferences.
    #[arg(long, default_value_t = 100_000)]
    users: u64,
    /// Row changes of the W2 backlog.
    #[arg(long, default_value_t = 1_000_000)]
    changes: u64,
    /// W3: source transactions per second, and for how long.
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// W4: sessions read from each side.
    #[arg(long, default_value_t = 10_000)]
    reads: usize,
    /// W1: rounds of a snapshot and its `--pipe` limit.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Workloads to run (w1,w2,w3,w4).
    #[arg(long, default_value = "w1,w2,w3,w4")]
    only: String,
    /// Accepted for `cargo bench` compatibility.
    #[arg(long, hide = true)]
    bench: bool,
}

const SESSIONS_PER_USER: u64 = 10;
const ATTRS_PER_SESSION: u64 = 3;
const PREFIX: &str = "b:";

struct Env {
    admin_url: String,
    mysql_url: String,
    redis_url: String,
    redis_port: u16,
    db: String,
    state_dir: PathBuf,
    work: PathBuf,
}

fn env(args: &Args) -> Env {
    let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let admin = var(
        "MYSQL_ADMIN_URL",
        "mysql://admin:admin-local-only@127.0.0.1:13306/",
    );
    let repl = var(
        "MYSQL_URL",
        "mysql://replicator:replicator-local-only@127.0.0.1:13306/sessions",
    );
    let redis = url::Url::parse(&var("REDIS_URL", "redis://127.0.0.1:16379/0")).unwrap();
    let db = format!("bench_{}", args.users);
    let mut mysql = url::Url::parse(&repl).unwrap();
    mysql.set_path(&db);
    let work = std::env::temp_dir().join("replicator-bench");
    std::fs::create_dir_all(&work).unwrap();
    Env {
        admin_url: admin,
        mysql_url: mysql.to_string(),
        redis_url: format!(
            "redis://{}:{}/9",
            redis.host_str().unwrap(),
            redis.port().unwrap()
        ),
        redis_port: redis.port().unwrap(),
        state_dir: work.join(format!("state-{db}")),
        db,
        work,
    }
}

async fn admin(env: &Env, db: Option<&str>) -> mysql_async::Conn {
    let opts =
        mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(&env.admin_url).unwrap())
            .db_name(db)
            .init(vec!["SET time_zone = '+00:00'"]);
    mysql_async::Conn::new(opts)
        .await
        .expect("MariaDB of scripts/services")
}

/// The replicator binary, with the benchmark's settings. BENCH_WRAP runs it
/// under a profiler: `BENCH_WRAP="perf record -g -o perf.data --"`.
fn replicator(env: &Env, args: &[&str]) -> tokio::process::Command {
    let wrap = std::env::var("BENCH_WRAP").unwrap_or_default();
    let mut words: Vec<String> = wrap.split_whitespace().map(String::from).collect();
    words.push(env!("CARGO_BIN_EXE_replicator").to_string());
    let mut cmd = tokio::process::Command::new(&words[0]);
    cmd.args(&words[1..])
        .args(args)
        .env("MYSQL_URL", &env.mysql_url)
        .env("REDIS_URL", &env.redis_url)
        .env("KEY_PREFIX", PREFIX)
        .env("STATE_DIR", &env.state_dir)
        .env("SERVER_ID", "77001")
        .env("METRICS_ADDR", "off")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    cmd
}

/// A finished run of the replicator.
struct Measured {
    wall: Duration,
    /// Peak RSS, MiB.
    peak: u64,
    /// CPU time (user + system), seconds, as last seen before it exited.
    cpu: f64,
    stdout: String,
}

/// Runs the replicator to completion, watching its memory and CPU time.
async fn measure(env: &Env, args: &[&str]) -> Measured {
    let started = Instant::now();
    let mut child = replicator(env, args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut peak = 0;
    let mut stdout = child.stdout.take().unwrap();
    let reader = tokio::spawn(async move {
        let mut s = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut s)
            .await
            .unwrap();
        s
    });
    let mut cpu = 0.0;
    loop {
        peak = peak.max(peak_rss(pid).unwrap_or(0));
        cpu = cpu_seconds(pid).unwrap_or(cpu);
        match tokio::time::timeout(Duration::from_millis(20), child.wait()).await {
            Ok(status) => {
                assert!(status.unwrap().success(), "replicator {args:?} failed");
                break;
            }
            Err(_) => continue,
        }
    }
    Measured {
        wall: started.elapsed(),
        peak,
        cpu,
        stdout: reader.await.unwrap(),
    }
}

/// utime + stime of a process (fields 14 and 15 of /proc/pid/stat, in
/// clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Redis's own CPU time (user + system) and commands executed so far.
async fn redis_usage(env: &Env) -> (f64, u64) {
    let client = redis::Client::open(env.redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("all")
        .query_async(&mut conn)
        .await
        .unwrap();
    let field = |name: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let cpu = field("used_cpu_user") + field("used_cpu_sys");
    (cpu, field("total_commands_processed") as u64)
}

fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024)
}

async fn flush_bench_redis(env: &Env) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(env.redis_url.as_str()).unwrap();
    let mut r = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("FLUSHDB")
        .arg("ASYNC")
        .query_async(&mut r)
        .await
        .unwrap();
    r
}

// ---- data

async fn generate(env: &Env, args: &Args) {
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

// ---- workloads

struct Row(String, String);

/// W1 and its limit, in alternating rounds: this machine's speed drifts by
/// as much as a factor of two over minutes, so each snapshot is compared
/// with a `--pipe` run taken right after it, and the medians are reported.
async fn w1(env: &Env, args: &Args, rows: &mut Vec<Row>) {
    let resp = env.work.join("w1.resp");
    let mut rounds = Vec::new();
    for round in 0..args.rounds.max(1) {
        let _ = std::fs::remove_dir_all(&env.state_dir);
        flush_bench_redis(env).await;
        let snapshot = measure(env, &["snapshot"]).await;
        if round == 0 {
            // The limit: W1's own final commands, as RESP, through redis-cli --pipe.
            let state = StateStore::open_read_only(&env.state_dir).unwrap();
            let mut out = std::io::BufWriter::new(std::fs::File::create(&resp).unwrap());
            model_batches(&state, &Keys::new(PREFIX), Timestamp::now(), |batch| {
                out.write_all(&pipeline(&batch, true).get_packed_pipeline())
                    .unwrap();
                Ok(())
            })
            .unwrap();
        }
        flush_bench_redis(env).await;
        let started = Instant::now();
        let status = std::process::Command::new("redis-cli")
            .args(["-p", &env.redis_port.to_string(), "-n", "9", "--pipe"])
            .stdin(std::fs::File::open(&resp).unwrap())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let pipe = started.elapsed().as_secs_f64();
        eprintln!(
            "W1 round {}: snapshot {:.1} s, --pipe {pipe:.1} s",
            round + 1,
            snapshot.wall.as_secs_f64()
        );
        rounds.push((snapshot, pipe));
    }
    let _ = std::fs::remove_file(&resp);

    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let secs = median(rounds.iter().map(|(s, _)| s.wall.as_secs_f64()).collect());
    let pipe = median(rounds.iter().map(|(_, p)| *p).collect());
    let ratios: Vec<f64> = rounds
        .iter()
        .map(|(s, p)| s.wall.as_secs_f64() / p)
        .collect();
    let peak = rounds.iter().map(|(s, _)| s.peak).max().unwrap_or(0);
    let cpu = median(rounds.iter().map(|(s, _)| s.cpu).collect());
    let out = &rounds[0].0.stdout;
    let number = |label: &str| -> u64 {
        out.lines()
            .filter(|l| l.contains(label))
            .map(|l| {
                l.split_whitespace()
                    .find_map(|w| w.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    };
    let read = number("rows read");
    let sessions = number("sessions written");
    let n = rounds.len();
    rows.push(Row(
        "W1 snapshot".into(),
        format!(
            "{secs:.1} s (median of {n}): {read} rows read ({:.0}/s), {sessions} sessions written ({:.0}/s), replicator CPU {cpu:.1} s (median), peak RSS {peak} MiB",
            read as f64 / secs,
            sessions as f64 / secs
        ),
    ));
    let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.2}x")).collect();
    rows.push(Row(
        "limit: redis-cli --pipe".into(),
        format!(
            "{pipe:.1} s (median) for W1's commands; W1 takes {:.2}x that (median; rounds {})",
            median(ratios.clone()),
            shown.join(", ")
        ),
    ));

    // Redis now holds W1's model again; give it W1's marker so that W2
    // streams on from the checkpoint instead of rebuilding.
    let id = StateStore::open_read_only(&env.state_dir)
        .unwrap()
        .checkpoint()
        .unwrap()
        .unwrap()
        .snapshot
        .id;
    let client = redis::Client::open(env.redis_url.as_str()).unwrap();
    let mut r = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("SET")
        .arg(format!("{PREFIX}replicator:snapshot"))
        .arg(id)
        .query_async(&mut r)
        .await
        .unwrap();
}

/// The W2 backlog: a mix over the four tables, in transactions of about
/// 1,000 rows. Returns the row changes written.
async fn backlog(env: &Env, args: &Args) -> u64 {
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

async fn w2(env: &Env, args: &Args, rows: &mut Vec<Row>) {
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

async fn w3(env: &Env, args: &Args, rows: &mut Vec<Row>) {
    // Live sessions to write to, each at most a few times.
    let mut conn = admin(env, Some(&env.db)).await;
    let ids: Vec<String> = conn
        .query("SELECT session_id FROM user_sessions WHERE expires_at > NOW() + INTERVAL 1 HOUR LIMIT 20000")
        .await
        .unwrap();
    drop(conn);
    let mut child = replicator(env, &["run"])
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
    let pct = |p: f64| {
        lat.get(((seen as f64 * p) as usize).min(seen.saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
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

async fn w4(env: &Env, args: &Args, rows: &mut Vec<Row>) {
    let mut conn = admin(env, Some(&env.db)).await;
    let mut ids: Vec<String> = conn
        .query("SELECT session_id FROM user_sessions WHERE expires_at > NOW() + INTERVAL 1 HOUR")
        .await
        .unwrap();
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
        let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)].as_secs_f64() * 1000.0;
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

#[tokio::main]
async fn main() {
    // `cargo test --all-targets` runs bench targets too, without `--bench`:
    // the workloads need minutes and the local services, so only `cargo
    // bench` (or scripts/bench) runs them.
    if !std::env::args().any(|a| a == "--bench") {
        println!("e2e: skipped (run it with scripts/bench or cargo bench --bench e2e)");
        return;
    }
    let args = Args::parse();
    let env = env(&args);
    generate(&env, &args).await;
    let mut rows = Vec::new();
    let only = |w: &str| args.only.split(',').any(|o| o.trim() == w);
    if only("w1") {
        w1(&env, &args, &mut rows).await;
    }
    if only("w2") {
        w2(&env, &args, &mut rows).await;
    }
    if only("w3") {
        w3(&env, &args, &mut rows).await;
    }
    if only("w4") {
        w4(&env, &args, &mut rows).await;
    }
    let host = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    println!();
    println!(
        "{} users, {} sessions ({}% expired), {} attributes; {} cores ({host})",
        args.users,
        args.users * SESSIONS_PER_USER,
        100 / 5,
        args.users * SESSIONS_PER_USER * ATTRS_PER_SESSION,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
    );
    println!("| workload | result |");
    println!("| --- | --- |");
    for Row(name, result) in rows {
        println!("| {name} | {result} |");
    }
}
