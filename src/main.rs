//! The `replicator` binary: parses arguments, sets up logging and signals,
//! and hands over to the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use replicator::app;
use replicator::cli::{Cli, Command, LogFormat};

/// jemalloc: a group's rows and commands are allocated on one thread and
/// freed on others, which glibc's allocator does slowly.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main`: memory freed by one phase (a
/// snapshot, a rebuild of the namespace) goes back to the system within a
/// second, from a thread of jemalloc's own, instead of staying resident
/// under the next phase, where it would add to the peak (docs/performance.md
/// has the measurement). `_RJEM_MALLOC_CONF` still overrides.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
static malloc_conf: &[u8; 43] = b"background_thread:true,dirty_decay_ms:1000\0";

fn main() -> ExitCode {
    // A `.env` file in the working directory fills in unset variables.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let is_verify = matches!(cli.command, Command::Verify(_));

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let status = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        app::run(cli.command, shutdown).await
    });
    match status {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            for line in e.to_string().lines() {
                eprintln!("error: {line}");
            }
            ExitCode::from(if is_verify {
                app::EXIT_CANNOT_CHECK as u8
            } else {
                1
            })
        }
    }
}

fn init_logging(format: LogFormat) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // The Redis client logs every reconnection attempt to every node of a
    // cluster; the replicator logs the outage itself, once. RUST_LOG that
    // names `redis` shows them again.
    let asked = std::env::var("RUST_LOG").is_ok_and(|v| v.contains("redis"));
    if !asked {
        if let Ok(quiet) = "redis=off".parse() {
            filter = filter.add_directive(quiet);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("stop requested: finishing the work in flight");
    shutdown.cancel();
}
