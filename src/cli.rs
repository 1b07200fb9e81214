//! Command-line interface: flags with environment fallbacks.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{Config, SslMode};

/// Keeps a Redis session model in sync with a MySQL/MariaDB user-session database.
#[derive(Debug, Parser)]
#[command(name = "replicator", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Cold start: one consistent read of the four tables fills Redis and
    /// records the binlog position of that read.
    Snapshot(SnapshotArgs),
    /// The sidecar: snapshot if there is no checkpoint, then apply every row
    /// change from the binlog to Redis.
    Run(RunArgs),
    /// Compare Redis with MySQL field by field; exit 0 when they match, 1 when
    /// they differ, 2 when the check could not be made.
    Verify(VerifyArgs),
    /// Show the checkpoint in the state directory.
    Status(StatusArgs),
}

/// Where the source and the target are.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// Source database: mysql://user:password@host:port/database
    #[arg(long, env = "MYSQL_URL", hide_env_values = true)]
    pub mysql_url: String,

    /// TLS to MySQL.
    #[arg(long, env = "MYSQL_SSL_MODE", value_enum, default_value_t = SslMode::Preferred)]
    pub mysql_ssl_mode: SslMode,

    /// PEM file of the CA that signed the MySQL server's certificate (verify-ca, verify-identity).
    #[arg(long, env = "MYSQL_SSL_CA")]
    pub mysql_ssl_ca: Option<PathBuf>,

    /// Target Redis: redis://[:password@]host:port[/db] or rediss:// for TLS.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: String,

    /// PEM file of the CA that signed the Redis server's certificate (rediss://).
    #[arg(long, env = "REDIS_CA")]
    pub redis_ca: Option<PathBuf>,

    /// Prefix of every Redis key the replicator writes.
    #[arg(long, env = "KEY_PREFIX", default_value = "")]
    pub key_prefix: String,

    /// Before a checkpoint moves, wait until this many replicas of every
    /// Redis master written (`WAIT`) have the writes, so that a failover
    /// loses nothing the checkpoint counts as applied. 0: do not wait.
    #[arg(long, env = "REDIS_WAIT_REPLICAS", default_value_t = 0)]
    pub redis_wait_replicas: u32,

    /// How long to wait for those replicas, in milliseconds; fewer in time
    /// is an outage (the writes are retried, the checkpoint stays).
    #[arg(long, env = "REDIS_WAIT_TIMEOUT_MS", default_value_t = 1000)]
    pub redis_wait_timeout_ms: u64,
}

/// Where the replicator keeps its state.
#[derive(Debug, Clone, Args)]
pub struct StateArgs {
    /// RocksDB directory for the checkpoint and the replicator's copy of the tables.
    #[arg(long, env = "STATE_DIR")]
    pub state_dir: PathBuf,
}

/// How hard a snapshot may press on a Redis that serves traffic.
#[derive(Debug, Clone, Args)]
pub struct PaceArgs {
    /// Most Redis commands per second the snapshot writes (its sessions,
    /// indexes and stale-key removal; also a rebuild of a lost namespace).
    /// A session is two commands, a user's index two more. Unlimited when
    /// unset or 0.
    #[arg(long, env = "SNAPSHOT_MAX_RATE")]
    pub snapshot_max_rate: Option<u32>,
}

impl PaceArgs {
    pub fn pace(&self) -> crate::snapshot::Pace {
        crate::snapshot::Pace::per_second(self.snapshot_max_rate)
    }
}

#[derive(Debug, Clone, Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub pace: PaceArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub pace: PaceArgs,

    /// Replica server id, unique among the source server's replicas.
    #[arg(long, env = "SERVER_ID")]
    pub server_id: u32,

    /// Stop, with the checkpoint committed, once the position the server
    /// reported at start has been applied.
    #[arg(long)]
    pub exit_when_caught_up: bool,

    /// When the checkpoint's binlog file is gone from the server, or the
    /// stream reaches an event that cannot be applied exactly (statement-format
    /// DML on a source table, say), take a fresh snapshot and carry on instead
    /// of stopping with an error.
    #[arg(long)]
    pub resnapshot_if_needed: bool,

    /// Largest source transaction applied as one atomic Redis step; larger
    /// ones are applied in several steps, in order.
    #[arg(long, env = "MAX_TRANSACTION_ROWS", default_value_t = 50_000)]
    pub max_transaction_rows: usize,

    /// Address of /metrics (Prometheus), /healthz and /readyz; "off" or an
    /// empty value turns them off.
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9187")]
    pub metrics_addr: String,

    /// /readyz answers 200 only while the replication lag is under this many seconds.
    #[arg(long, env = "READY_MAX_LAG", default_value_t = 5.0)]
    pub ready_max_lag: f64,

    /// When the stream stops on an event it cannot apply, stay up (not
    /// ready, not healthy, /metrics still served with
    /// replicator_stream_stopped 1) until told to stop, instead of exiting:
    /// under an orchestrator the stop is then seen by Prometheus instead of
    /// lost in a restart loop.
    #[arg(long, env = "HOLD_ON_STOP")]
    pub hold_on_stop: bool,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// Check only this many randomly chosen live sessions (for large databases).
    #[arg(long)]
    pub sample: Option<u64>,

    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,

    /// How many differences to show as examples.
    #[arg(long, default_value_t = 10)]
    pub examples: usize,

    /// Sessions expiring within this many seconds of now are not judged.
    #[arg(long, default_value_t = 5)]
    pub grace_seconds: i64,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub state: StateArgs,

    /// Source database, to say how far behind the server the checkpoint is (optional).
    #[arg(long, env = "MYSQL_URL", hide_env_values = true)]
    pub mysql_url: Option<String>,

    /// TLS to MySQL.
    #[arg(long, env = "MYSQL_SSL_MODE", value_enum, default_value_t = SslMode::Preferred)]
    pub mysql_ssl_mode: SslMode,

    /// PEM file of the CA that signed the MySQL server's certificate.
    #[arg(long, env = "MYSQL_SSL_CA")]
    pub mysql_ssl_ca: Option<PathBuf>,

    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
}

impl ConnectionArgs {
    pub fn config(&self, state_dir: Option<PathBuf>) -> Config {
        Config {
            mysql_url: self.mysql_url.clone(),
            mysql_ssl_mode: self.mysql_ssl_mode,
            mysql_ssl_ca: self.mysql_ssl_ca.clone(),
            redis_ca: self.redis_ca.clone(),
            redis_url: self.redis_url.clone(),
            key_prefix: self.key_prefix.clone(),
            redis_wait: (self.redis_wait_replicas > 0).then(|| crate::sink::WaitReplicas {
                replicas: self.redis_wait_replicas,
                timeout: std::time::Duration::from_millis(self.redis_wait_timeout_ms.max(1)),
            }),
            state_dir,
        }
    }
}
