//! The commands, wired from configuration to the library's parts.
//!
//! Every command first runs the prerequisite check: MySQL reachable with the
//! binlog settings the model needs and the four tables present, Redis
//! reachable.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cli::{Command, RunArgs, SnapshotArgs, StatusArgs, VerifyArgs};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::Keys;
use crate::progress::Progress;
use crate::replicate::{RedisGroups, Stream, StreamOptions};
use crate::sink::RedisSink;
use crate::snapshot::{Pace, SnapshotJob};
use crate::source::{check_settings, MySqlSource, ServerSettings};
use crate::state::StateStore;
use crate::telemetry::{self, Health};
use crate::verify::{verify, VerifyOptions};

/// Exit status of `verify` when the check could not be made.
pub const EXIT_CANNOT_CHECK: i32 = 2;

/// Runs one command until it completes or `shutdown` is cancelled; returns
/// the process exit status.
pub async fn run(command: Command, shutdown: CancellationToken) -> Result<i32> {
    match command {
        Command::Snapshot(args) => snapshot(args, shutdown).await.map(|()| 0),
        Command::Run(args) => replicate(args, shutdown).await.map(|()| 0),
        Command::Verify(args) => verify_command(args).await,
        Command::Status(args) => status(args).await.map(|()| 0),
    }
}

/// The source and target, checked and connected.
pub struct Connected {
    pub source: MySqlSource,
    pub settings: ServerSettings,
    pub sink: RedisSink,
    pub keys: Keys,
}

impl Connected {
    /// A snapshot of this source into `state` and this Redis.
    pub fn snapshot_job<'a>(
        &'a self,
        state: &'a StateStore,
        pace: &Pace,
        shutdown: CancellationToken,
    ) -> SnapshotJob<'a> {
        SnapshotJob {
            source: &self.source,
            flavor: self.settings.flavor,
            state,
            sink: &self.sink,
            keys: &self.keys,
            pace: pace.clone(),
            progress: Progress::for_stderr(),
            shutdown,
        }
    }
}

/// The prerequisite check, leaving connections ready for work.
pub async fn connect(config: &Config) -> Result<Connected> {
    let source = MySqlSource::new(
        &config.mysql_url,
        config.mysql_ssl_mode,
        config.mysql_ssl_ca.as_deref(),
    )?;
    let mut conn = source.connect().await?;
    let settings = source.settings(&mut conn).await?;
    let _ = conn.disconnect().await;
    check_settings(&settings)?;
    let sink = RedisSink::connect(&config.redis_url, config.redis_ca.as_deref())
        .await?
        .with_wait(config.redis_wait);
    Ok(Connected {
        source,
        settings,
        sink,
        keys: Keys::new(config.key_prefix.clone()),
    })
}

/// Opens the state directory, refusing one that holds another database's state.
fn open_state(config: &Config, c: &Connected) -> Result<StateStore> {
    let state = StateStore::open(config.state_dir()?)?;
    if let Some(cp) = state.checkpoint()? {
        if cp.snapshot.database != c.source.database() {
            return Err(Error::Config(format!(
                "STATE_DIR {} holds the state of database `{}`, not `{}`: give each source database \
                 its own STATE_DIR (or delete this one to start over with a snapshot)",
                state.path().display(),
                cp.snapshot.database,
                c.source.database()
            )));
        }
    }
    Ok(state)
}

async fn snapshot(args: SnapshotArgs, shutdown: CancellationToken) -> Result<()> {
    let config = args.connection.config(Some(args.state.state_dir));
    let c = connect(&config).await?;
    let state = open_state(&config, &c)?;
    let (_, report) = c
        .snapshot_job(&state, &args.pace.pace(), shutdown)
        .run()
        .await?;
    println!("{report}");
    Ok(())
}

async fn replicate(args: RunArgs, shutdown: CancellationToken) -> Result<()> {
    let config = args.connection.config(Some(args.state.state_dir.clone()));
    let health = Arc::new(Health::new(Duration::from_secs_f64(
        args.ready_max_lag.max(0.0),
    )));
    let metrics_addr = args.metrics_addr.trim();
    if !metrics_addr.is_empty() && metrics_addr != "off" {
        let addr = metrics_addr.parse().map_err(|e| {
            Error::Config(format!(
                "--metrics-addr `{metrics_addr}` is not an address like 127.0.0.1:9187: {e}"
            ))
        })?;
        telemetry::serve(addr, health.clone(), shutdown.clone()).await?;
    }
    let c = connect(&config).await?;
    // Both connections passed the prerequisite check: healthy from here on,
    // through the snapshot too (readiness waits for streaming).
    health.set_mysql_up(true);
    health.set_redis_up(true);
    if args.server_id == 0 || args.server_id == c.settings.server_id {
        return Err(Error::Config(format!(
            "SERVER_ID {} cannot be used: {}. Give the replicator a server id of its own, \
             unique among the source's replicas (--server-id or SERVER_ID)",
            args.server_id,
            if args.server_id == 0 {
                "0 is not a valid replica id".to_string()
            } else {
                "it is the MySQL server's own server_id".to_string()
            }
        )));
    }
    tokio::spawn(watch_source_position(c.source.clone(), shutdown.clone()));
    let state = open_state(&config, &c)?;
    let pace = args.pace.pace();
    if state.checkpoint()?.is_none() {
        tracing::info!("no checkpoint in the state directory: taking a snapshot first");
        c.snapshot_job(&state, &pace, shutdown.clone())
            .run()
            .await?;
    }
    let options = StreamOptions {
        exit_when_caught_up: args.exit_when_caught_up,
        resnapshot_if_needed: args.resnapshot_if_needed,
        max_transaction_rows: args.max_transaction_rows,
        ..StreamOptions::new(args.server_id)
    };
    let stream = Stream {
        source: &c.source,
        sink: RedisGroups::new(
            c.sink.clone(),
            c.keys.clone(),
            state.clone(),
            pace.clone(),
            shutdown.clone(),
        ),
        state: &state,
        keys: &c.keys,
        options: &options,
        health,
        shutdown: shutdown.clone(),
    };
    let streamed = stream
        .run(async || {
            let job = c.snapshot_job(&state, &pace, shutdown.clone());
            let (checkpoint, report) = job.run().await?;
            tracing::info!("{report}");
            Ok(checkpoint)
        })
        .await;
    match streamed {
        Err(e @ Error::Unappliable { .. }) if args.hold_on_stop => {
            for line in e.to_string().lines() {
                tracing::error!("{line}");
            }
            tracing::error!(
                "the stream stopped (above) and the replicator holds there (--hold-on-stop): \
                 not ready, /metrics still served, until it is told to stop"
            );
            shutdown.cancelled().await;
            Err(e)
        }
        streamed => streamed,
    }
}

/// How often the source's binlog position is read for /metrics.
const SOURCE_POSITION_EVERY: Duration = Duration::from_secs(10);

/// Reads the server's binlog position every few seconds into /metrics
/// (`replicator_source_*`), so that a checkpoint that stands still while
/// the source moves shows, even when the stream itself is stuck. One
/// connection, opened again only after it failed.
async fn watch_source_position(source: MySqlSource, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(SOURCE_POSITION_EVERY);
    let mut conn = None;
    let mut failing = false;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        match source_position(&source, &mut conn).await {
            Ok(position) => {
                telemetry::source_position(&position);
                failing = false;
            }
            Err(e) if !failing => {
                tracing::warn!("cannot read the source's binlog position for /metrics: {e}");
                failing = true;
            }
            Err(_) => {}
        }
    }
    if let Some(conn) = conn {
        let _ = conn.disconnect().await;
    }
}

/// The source's binlog position over `conn`, connected first if need be;
/// a failed connection is dropped, to be opened again next time.
async fn source_position(
    source: &MySqlSource,
    conn: &mut Option<mysql_async::Conn>,
) -> Result<crate::position::BinlogPosition> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(source.connect().await?),
    };
    let position = MySqlSource::position_on(c).await;
    if position.is_err() {
        *conn = None;
    }
    position
}

async fn verify_command(args: VerifyArgs) -> Result<i32> {
    let config = args.connection.config(None);
    let c = connect(&config).await?;
    let options = VerifyOptions {
        sample: args.sample,
        examples: args.examples,
        grace_seconds: args.grace_seconds,
    };
    let report = verify(&c.source, c.settings.flavor, &c.sink, &c.keys, &options).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serializes")
        );
    } else {
        println!("{report}");
    }
    Ok(if report.matched { 0 } else { 1 })
}

async fn status(args: StatusArgs) -> Result<()> {
    let state = StateStore::open_read_only(&args.state.state_dir)?;
    let checkpoint = state.checkpoint()?;
    drop(state);
    // How far behind the server, when it can be asked.
    let server = match (&args.mysql_url, &checkpoint) {
        (Some(url), Some(_)) => Some(server_position(url, &args).await),
        _ => None,
    };
    let behind = match (&checkpoint, &server) {
        (Some(cp), Some(Ok(server))) => Some(Behind::between(&cp.position, server)),
        _ => None,
    };
    if args.json {
        let value = serde_json::json!({
            "checkpoint": checkpoint,
            "server_position": server.as_ref().and_then(|s| s.as_ref().ok()),
            "server_error": server.as_ref().and_then(|s| s.as_ref().err()).map(|e| e.to_string()),
            "behind": behind,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).expect("status serializes")
        );
        return Ok(());
    }
    let Some(cp) = checkpoint else {
        println!(
            "no checkpoint in {}: no complete snapshot yet (`replicator run` takes one)",
            args.state.state_dir.display()
        );
        return Ok(());
    };
    println!("checkpoint     {}", cp.position);
    if cp.skip_rows > 0 {
        println!(
            "               (inside a large transaction: {} rows of it applied)",
            cp.skip_rows
        );
    }
    println!("committed at   {}", unix(cp.committed_at));
    println!(
        "snapshot       {} of database `{}`",
        cp.snapshot.id, cp.snapshot.database
    );
    println!(
        "snapshot taken {} at {}",
        unix(cp.snapshot.taken_at),
        cp.snapshot.position
    );
    match (server, behind) {
        (Some(Ok(server)), Some(behind)) => {
            println!("server at      {server}");
            println!("behind         {behind}");
        }
        (Some(Err(e)), _) => println!("server         not reachable: {e}"),
        _ => println!("server         (give MYSQL_URL to compare with the server's position)"),
    }
    Ok(())
}

async fn server_position(url: &str, args: &StatusArgs) -> Result<crate::position::BinlogPosition> {
    let source = MySqlSource::new(url, args.mysql_ssl_mode, args.mysql_ssl_ca.as_deref())?;
    source.current_position().await
}

/// How far a checkpoint is behind the server's binlog.
#[derive(Debug, serde::Serialize)]
struct Behind {
    /// `None` when the server's binlog has another base name than the
    /// checkpoint's: the two cannot be compared.
    files: Option<u64>,
    /// Bytes within the same file (when `files` is 0).
    bytes: u64,
}

impl Behind {
    fn between(
        at: &crate::position::BinlogPosition,
        server: &crate::position::BinlogPosition,
    ) -> Self {
        if at.file.base() != server.file.base() {
            return Behind {
                files: None,
                bytes: 0,
            };
        }
        let files = server.file.sequence().saturating_sub(at.file.sequence());
        let bytes = if files == 0 {
            server.offset.saturating_sub(at.offset)
        } else {
            0
        };
        Behind {
            files: Some(files),
            bytes,
        }
    }
}

impl std::fmt::Display for Behind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.files, self.bytes) {
            (None, _) => write!(
                f,
                "unknown: the server's binlog has another base name than the checkpoint's"
            ),
            (Some(0), 0) => write!(f, "nothing: caught up"),
            (Some(0), bytes) => write!(f, "{bytes} bytes of binlog"),
            (Some(files), _) => write!(f, "{files} binlog file(s)"),
        }
    }
}

fn unix(seconds: i64) -> String {
    crate::model::Timestamp::from_parts(seconds, 0).to_rfc3339()
}
