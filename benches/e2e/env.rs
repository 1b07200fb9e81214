//! The benchmark's settings, and the services it runs against.

use std::path::PathBuf;

use clap::Parser;

/// The benchmark's flags (after `--` of `cargo bench`, or of scripts/bench).
#[derive(Parser, Debug)]
pub struct Args {
    /// Users; each has 10 sessions (a fifth expired) of 3 attributes; 90% have preferences.
    #[arg(long, default_value_t = 100_000)]
    pub users: u64,
    /// Row changes of the W2 backlog.
    #[arg(long, default_value_t = 1_000_000)]
    pub changes: u64,
    /// W3: source transactions per second, and for how long.
    #[arg(long, default_value_t = 2_000)]
    pub rate: u64,
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// W4: sessions read from each side.
    #[arg(long, default_value_t = 10_000)]
    pub reads: usize,
    /// W1: rounds of a snapshot and its `--pipe` limit.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// W5: the snapshot's --snapshot-max-rate, in Redis commands per second.
    #[arg(long, default_value_t = 50_000)]
    pub snapshot_rate: u64,
    /// Workloads to run (w1,w2,w3,w4,w5; cluster: W1 and W2 on the local
    /// Redis Cluster).
    #[arg(long, default_value = "w1,w2,w3,w4,w5,cluster")]
    pub only: String,
    /// Accepted for `cargo bench` compatibility.
    #[arg(long, hide = true)]
    pub bench: bool,
}

pub const SESSIONS_PER_USER: u64 = 10;
pub const ATTRS_PER_SESSION: u64 = 3;
pub const PREFIX: &str = "b:";

#[derive(Clone)]
pub struct Env {
    pub admin_url: String,
    pub mysql_url: String,
    pub redis_url: String,
    pub redis_port: u16,
    pub db: String,
    pub state_dir: PathBuf,
    pub work: PathBuf,
}

pub fn env(args: &Args) -> Env {
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

pub async fn admin(env: &Env, db: Option<&str>) -> mysql_async::Conn {
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
pub fn replicator_command(env: &Env, args: &[&str]) -> tokio::process::Command {
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
