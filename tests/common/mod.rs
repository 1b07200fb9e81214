//! Test harness: each test gets its own database (created from
//! `sql/schema.sql`), its own Redis key prefix and its own state directory,
//! on the private servers that `scripts/services start` runs, and removes
//! them when it ends, so tests run in parallel.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use redis::AsyncCommands;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const DEFAULT_ADMIN_URL: &str = "mysql://admin:admin-local-only@127.0.0.1:13306/";
pub const DEFAULT_MYSQL_URL: &str =
    "mysql://replicator:replicator-local-only@127.0.0.1:13306/sessions";
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:16379/0";

pub mod cluster;
pub mod crash;
pub mod servers;
pub mod tls;
pub mod workload;

/// Where a test's MariaDB and Redis are.
#[derive(Clone, Debug)]
pub struct Servers {
    /// An account with every privilege, for the test's own SQL.
    pub admin_url: String,
    /// The replicator's least-privilege account (any database in the path).
    pub mysql_url: String,
    pub redis_url: String,
}

impl Servers {
    /// The servers of `scripts/services start`.
    pub fn shared() -> Servers {
        let var =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
        Servers {
            admin_url: var("MYSQL_ADMIN_URL", DEFAULT_ADMIN_URL),
            mysql_url: var("MYSQL_URL", DEFAULT_MYSQL_URL),
            redis_url: var("REDIS_URL", DEFAULT_REDIS_URL),
        }
    }

    /// The replicator account's URL with the database replaced.
    pub fn replicator_url(&self, database: &str) -> String {
        let mut url = url::Url::parse(&self.mysql_url).expect("MYSQL_URL is a URL");
        url.set_path(&format!("/{database}"));
        url.to_string()
    }
}

pub fn schema_sql() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/schema.sql")).unwrap()
}

pub fn sample_data_sql() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/sample_data.sql")).unwrap()
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A database, key prefix and state directory of one test.
pub struct TestDb {
    pub name: String,
    pub prefix: String,
    pub state_dir: PathBuf,
    /// Replica server id, unique among concurrent tests.
    pub server_id: u32,
    pub servers: Servers,
    pool: mysql_async::Pool,
    redis: redis::aio::ConnectionManager,
}

async fn admin_pool(admin_url: &str, database: Option<&str>) -> mysql_async::Pool {
    let opts = mysql_async::Opts::from_url(admin_url).expect("MYSQL_ADMIN_URL");
    let opts = mysql_async::OptsBuilder::from_opts(opts)
        .db_name(database)
        .init(vec!["SET time_zone = '+00:00'", "SET NAMES utf8mb4"]);
    mysql_async::Pool::new(opts)
}

impl TestDb {
    /// A fresh database with the schema loaded, on the shared servers.
    pub async fn new(test: &str) -> TestDb {
        Self::on(Servers::shared(), test).await
    }

    /// A fresh database with the schema loaded, on the given servers.
    pub async fn on(servers: Servers, test: &str) -> TestDb {
        let db = Self::empty_on(servers, test).await;
        db.sql(&schema_sql()).await;
        db
    }

    /// A fresh database with no tables.
    pub async fn empty(test: &str) -> TestDb {
        Self::empty_on(Servers::shared(), test).await
    }

    async fn empty_on(servers: Servers, test: &str) -> TestDb {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name: String = format!("t_{test}_{}_{n}", std::process::id())
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(64)
            .collect();
        let root = admin_pool(&servers.admin_url, None).await;
        let mut conn = root
            .get_conn()
            .await
            .expect("MariaDB of scripts/services is running");
        conn.query_drop(format!(
            "DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}` CHARACTER SET utf8mb4; \
             GRANT SELECT ON `{name}`.* TO 'replicator'@'127.0.0.1'"
        ))
        .await
        .unwrap();
        drop(conn);
        root.disconnect().await.unwrap();
        let client = redis::Client::open(servers.redis_url.as_str()).unwrap();
        let redis = client
            .get_connection_manager_with_config(
                redis::aio::ConnectionManagerConfig::new()
                    .set_response_timeout(None)
                    .set_number_of_retries(3),
            )
            .await
            .expect("Redis of scripts/services is running");
        let state_dir = std::env::temp_dir().join(format!("replicator-test-{name}"));
        let _ = std::fs::remove_dir_all(&state_dir);
        TestDb {
            server_id: 100_000 + (std::process::id() % 20_000) * 100 + n,
            prefix: format!("{name}:"),
            pool: admin_pool(&servers.admin_url, Some(&name)).await,
            servers,
            name,
            state_dir,
            redis,
        }
    }

    /// Runs SQL statements (several, separated by `;`) as the admin account.
    pub async fn sql(&self, sql: &str) {
        let mut conn = self.pool.get_conn().await.unwrap();
        conn.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{e}\nin SQL: {sql}"));
    }

    /// Runs SQL that may fail (a foreign key, a duplicate); a failed
    /// transaction is rolled back.
    pub async fn try_sql(&self, sql: &str) -> Result<(), String> {
        let mut conn = self.pool.get_conn().await.unwrap();
        match conn.query_drop(sql).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = conn.query_drop("ROLLBACK").await;
                Err(e.to_string())
            }
        }
    }

    /// A connection of its own (not from the pool), as the admin account.
    pub async fn conn(&self) -> mysql_async::Conn {
        let opts = mysql_async::Opts::from_url(&self.servers.admin_url).expect("MYSQL_ADMIN_URL");
        let opts = mysql_async::OptsBuilder::from_opts(opts)
            .db_name(Some(&self.name))
            .init(vec!["SET time_zone = '+00:00'", "SET NAMES utf8mb4"]);
        mysql_async::Conn::new(opts).await.unwrap()
    }

    /// Runs `sql` in an XA transaction `xid` up to its `XA PREPARE`, on a
    /// connection that then disconnects: the prepared transaction is left
    /// for any connection to commit or roll back (`XA COMMIT 'xid'`).
    pub async fn xa_prepare(&self, xid: &str, sql: &str) {
        let mut conn = self.conn().await;
        conn.query_drop(format!(
            "XA START '{xid}'; {sql}; XA END '{xid}'; XA PREPARE '{xid}'"
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}\nin XA {xid}: {sql}"));
        conn.disconnect().await.unwrap();
    }

    /// [`Self::xa_prepare`] of SQL that may fail: false (and nothing left
    /// prepared) when it did.
    pub async fn try_xa_prepare(&self, xid: &str, sql: &str) -> bool {
        let mut conn = self.conn().await;
        let prepared = conn
            .query_drop(format!(
                "SET SESSION innodb_lock_wait_timeout = 5; XA START '{xid}'; {sql}; XA END '{xid}'; XA PREPARE '{xid}'"
            ))
            .await
            .is_ok();
        if !prepared {
            let _ = conn.query_drop(format!("XA END '{xid}'")).await;
            let _ = conn.query_drop(format!("XA ROLLBACK '{xid}'")).await;
        }
        let _ = conn.disconnect().await;
        prepared
    }

    /// The committed checkpoint's position, as `status --json` reports it.
    pub async fn checkpoint(&self) -> (String, u64) {
        let out = self.run(&["status", "--json"]).await;
        let status: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json: {e}: {}", stderr(&out)));
        let position = &status["checkpoint"]["position"];
        (
            position["file"].as_str().unwrap_or_default().to_string(),
            position["offset"].as_u64().unwrap_or_default(),
        )
    }

    /// Runs a query and returns the rows.
    pub async fn query<T: mysql_async::prelude::FromRow + Send + 'static>(
        &self,
        sql: &str,
    ) -> Vec<T> {
        let mut conn = self.pool.get_conn().await.unwrap();
        conn.query(sql).await.unwrap()
    }

    pub async fn load_sample_data(&self) {
        self.sql(&sample_data_sql()).await;
    }

    pub fn mysql_url(&self) -> String {
        self.servers.replicator_url(&self.name)
    }

    /// The replicator binary with this test's settings in its environment.
    pub fn replicator(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_replicator"));
        cmd.args(args)
            .env("MYSQL_URL", self.mysql_url())
            .env("REDIS_URL", &self.servers.redis_url)
            .env("KEY_PREFIX", &self.prefix)
            .env("STATE_DIR", &self.state_dir)
            .env("SERVER_ID", self.server_id.to_string())
            // Tests run side by side: no fixed metrics port unless a test asks.
            .env("METRICS_ADDR", "off")
            .env("RUST_LOG", "info")
            .kill_on_drop(true);
        cmd
    }

    /// Runs the replicator to completion.
    pub async fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[]).await
    }

    /// Runs the replicator to completion, with settings of its environment
    /// replaced.
    pub async fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.replicator(args)
            .envs(env.iter().copied())
            .output()
            .await
            .expect("replicator binary runs")
    }

    /// Runs the replicator and requires exit status 0.
    pub async fn run_ok(&self, args: &[&str]) -> Output {
        self.run_ok_with(args, &[]).await
    }

    /// [`Self::run_with`], requiring exit status 0.
    pub async fn run_ok_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = self.run_with(args, env).await;
        assert!(
            out.status.success(),
            "replicator {args:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `run --exit-when-caught-up`: applies everything committed so far.
    pub async fn catch_up(&self) -> Output {
        self.run_ok(&["run", "--exit-when-caught-up"]).await
    }

    /// `run --exit-when-caught-up` with more arguments.
    pub async fn catch_up_with(&self, extra: &[&str]) -> Output {
        let mut args = vec!["run", "--exit-when-caught-up"];
        args.extend_from_slice(extra);
        self.run_ok(&args).await
    }

    /// Applies `sql`, catches up, and checks the whole namespace with
    /// `verify`.
    pub async fn change(&self, sql: &str) {
        self.sql(sql).await;
        self.catch_up().await;
        self.assert_verified().await;
    }

    /// `run` with `extra` arguments in the background, its log (stderr)
    /// written to `log`.
    pub fn sidecar(&self, extra: &[&str], log: &std::path::Path) -> tokio::process::Child {
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        let file = std::fs::File::create(log).unwrap();
        self.replicator(&args)
            .stderr(std::process::Stdio::from(file))
            .spawn()
            .unwrap()
    }

    /// `replicator run` with `extra` flags and its endpoints on a free
    /// port, stderr to `stderr`; returns it and the port.
    pub fn sidecar_with_metrics(
        &self,
        extra: &[&str],
        stderr: std::process::Stdio,
    ) -> (tokio::process::Child, u16) {
        let port = servers::free_port();
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        let child = self
            .replicator(&args)
            .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
            .stderr(stderr)
            .spawn()
            .unwrap();
        (child, port)
    }

    /// A log file of this test's, for [`Self::sidecar`].
    pub fn log_path(&self, what: &str) -> PathBuf {
        std::env::temp_dir().join(format!("{}-{what}.log", self.name))
    }

    /// `verify` reports a match.
    pub async fn assert_verified(&self) {
        let out = self.run(&["verify"]).await;
        assert!(
            out.status.success(),
            "verify: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// A connection that reconnects after a Redis restart.
    pub fn redis(&self) -> redis::aio::ConnectionManager {
        self.redis.clone()
    }

    /// One field of a session hash (`None` also while Redis is unreachable).
    pub async fn field(&self, session_id: &str, field: &str) -> Option<String> {
        let mut r = self.redis();
        r.hget(self.key(&format!("session:{session_id}")), field)
            .await
            .ok()
            .flatten()
    }

    /// The session hash as text.
    pub async fn session(&self, session_id: &str) -> BTreeMap<String, String> {
        let mut r = self.redis();
        r.hgetall(self.key(&format!("session:{session_id}")))
            .await
            .unwrap()
    }

    /// `EXPIRETIME` of a key of the namespace (-2: no key, -1: no TTL).
    pub async fn expire_time(&self, suffix: &str) -> i64 {
        let mut r = self.redis();
        redis::cmd("EXPIRETIME")
            .arg(self.key(suffix))
            .query_async(&mut r)
            .await
            .unwrap()
    }

    /// The user index as (member, score), by score.
    pub async fn index(&self, user_id: i64) -> Vec<(String, i64)> {
        let mut r = self.redis();
        r.zrange_withscores(self.key(&format!("user:{user_id}:sessions")), 0, -1)
            .await
            .unwrap()
    }

    /// Every key of the namespace, sorted, without the prefix.
    pub async fn keys(&self) -> Vec<String> {
        let mut r = self.redis();
        let pattern = format!("{}*", self.prefix);
        let mut keys: Vec<String> = {
            let mut iter = r.scan_match::<_, String>(pattern).await.unwrap();
            let mut out = Vec::new();
            while let Some(k) = futures_util::StreamExt::next(&mut iter).await {
                out.push(k.unwrap());
            }
            out
        };
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .map(|k| k[self.prefix.len()..].to_string())
            .collect()
    }

    /// Waits until the log file holds `needle`, or fails the test after
    /// `timeout`.
    pub async fn wait_for_log(&self, log: &std::path::Path, needle: &str, timeout: Duration) {
        let what = format!("{needle:?} in {}", log.display());
        self.wait_for(&what, timeout, || async {
            std::fs::read_to_string(log).is_ok_and(|text| text.contains(needle))
        })
        .await;
    }

    /// Waits until `check` holds, or fails the test after `timeout`.
    pub async fn wait_for<F, Fut>(&self, what: &str, timeout: Duration, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        while !check().await {
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (name, prefix, state_dir) = (
            self.name.clone(),
            self.prefix.clone(),
            self.state_dir.clone(),
        );
        let servers = self.servers.clone();
        // Drop runs outside async context guarantees: clean up on a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let pool = admin_pool(&servers.admin_url, None).await;
                if let Ok(mut conn) = pool.get_conn().await {
                    let _ = conn
                        .query_drop(format!(
                            "DROP DATABASE IF EXISTS `{name}`; \
                             REVOKE SELECT ON `{name}`.* FROM 'replicator'@'127.0.0.1'"
                        ))
                        .await;
                }
                let _ = pool.disconnect().await;
                if let Ok(client) = redis::Client::open(servers.redis_url.as_str()) {
                    if let Ok(mut r) = client.get_multiplexed_async_connection().await {
                        let keys: Vec<String> = {
                            let mut out = Vec::new();
                            if let Ok(mut iter) =
                                r.scan_match::<_, String>(format!("{prefix}*")).await
                            {
                                while let Some(Ok(k)) =
                                    futures_util::StreamExt::next(&mut iter).await
                                {
                                    out.push(k);
                                }
                            }
                            out
                        };
                        for chunk in keys.chunks(500) {
                            let _: redis::RedisResult<()> = r.del(chunk).await;
                        }
                    }
                }
            });
            let _ = std::fs::remove_dir_all(state_dir);
        });
        let _ = cleanup.join();
    }
}

/// `docker/docker-compose.yml`, parsed.
pub fn compose_file() -> serde_norway::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/docker-compose.yml");
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::from_str(&text).unwrap()
}

/// A plain HTTP/1.0 GET: (status, body), or None while nothing listens.
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// The value of a series in Prometheus text, by its full name with labels.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
