//! The library's error type.
//!
//! Every message names the problem and, where there is one, the fix. URLs in
//! messages are always redacted (see [`crate::config::redact_url`]).

use std::path::PathBuf;

/// Errors of the replicator library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is missing or malformed.
    #[error("configuration: {0}")]
    Config(String),

    /// The source server does not meet a requirement (a setting, a table, a privilege).
    #[error("{0}")]
    Prerequisite(String),

    /// MySQL could not be reached or refused the connection.
    #[error("cannot connect to MySQL at {url}: {source}. Check MYSQL_URL and that the server is running and reachable")]
    MysqlConnect {
        url: String,
        #[source]
        source: mysql_async::Error,
    },

    /// A MySQL statement failed.
    #[error("MySQL: {context}: {source}")]
    Mysql {
        context: String,
        #[source]
        source: mysql_async::Error,
    },

    /// Redis could not be reached or refused the connection.
    #[error("cannot connect to Redis at {url}: {source}. Check REDIS_URL, the password, and that the server is running")]
    RedisConnect {
        url: String,
        #[source]
        source: redis::RedisError,
    },

    /// A Redis command failed.
    #[error("Redis: {context}: {source}")]
    Redis {
        context: String,
        #[source]
        source: redis::RedisError,
    },

    /// The RocksDB state store failed.
    #[error("state store {path}: {message}")]
    State { path: PathBuf, message: String },

    /// The binlog stream broke (connection lost, server restarted); retried
    /// from the checkpoint.
    #[error("lost the MySQL binlog stream: {0}")]
    SourceLost(String),

    /// The binlog file the checkpoint points into is gone from the server.
    #[error(
        "the binlog file {file} of the checkpoint is no longer on the MySQL server ({message}). \
             The server purged it before the replicator read it, so changes since the checkpoint \
             cannot be replayed: take a fresh snapshot with `replicator snapshot`, or run with \
             --resnapshot-if-needed; and keep binlogs longer (binlog_expire_logs_seconds)"
    )]
    BinlogUnavailable { file: String, message: String },

    /// A binlog event that cannot be applied exactly: the stream stops
    /// before it, with the checkpoint before it.
    #[error(
        "the binlog event at {position}{on} cannot be applied exactly: {what}. The checkpoint stays \
         before it, so Redis holds the model as of the last event applied. {remedy}",
        on = table.map(|t| format!(" (table `{t}`)")).unwrap_or_default(),
        remedy = remedy(what)
    )]
    Unappliable {
        position: crate::position::BinlogPosition,
        table: Option<&'static str>,
        what: String,
    },

    /// Work stopped by a shutdown request before it completed.
    #[error("{0}")]
    Interrupted(String),

    /// `--redis-wait-replicas`: fewer replicas than asked for acknowledged
    /// the writes in time (an outage: the group is written again).
    #[error(
        "only {acked} of the {wanted} Redis replicas asked for (--redis-wait-replicas) \
         acknowledged the writes within {timeout:?}"
    )]
    ReplicasBehind {
        acked: i64,
        wanted: u32,
        timeout: std::time::Duration,
    },

    /// Redis lost the namespace while a snapshot wrote it.
    #[error("{0}")]
    NamespaceLost(String),

    /// An internal task panicked or was cancelled: a bug, not an outage.
    #[error(
        "internal error: {task} failed ({message}). Nothing past the last checkpoint was \
         committed, so a restart resumes from it; please report this as a bug"
    )]
    TaskFailed { task: &'static str, message: String },

    /// A row from the source could not be decoded into the model.
    #[error("malformed row in `{table}`: {reason}")]
    Decode { table: &'static str, reason: String },
}

/// The way out of a stop on an event that cannot be applied exactly.
fn remedy(what: &str) -> &'static str {
    if what.contains("as a statement") {
        "Make every client log row events (binlog_format=ROW, and no SET SESSION binlog_format), \
         then take a fresh snapshot (`replicator snapshot`, or run with --resnapshot-if-needed)"
    } else if what.contains("binlog_row_image") {
        "Set binlog_row_image=FULL for every client, then take a fresh snapshot (`replicator \
         snapshot`, or run with --resnapshot-if-needed)"
    } else {
        "Take a fresh snapshot once the source is as the model needs it (`replicator snapshot`, \
         or run with --resnapshot-if-needed)"
    }
}

/// The MySQL server error codes the replicator tells apart.
pub(crate) mod mysql_code {
    /// No privilege on the database named at connect.
    pub const DBACCESS_DENIED: u16 = 1044;
    /// Wrong user or password; MariaDB also answers a binlog request without
    /// REPLICATION SLAVE with it.
    pub const ACCESS_DENIED: u16 = 1045;
    pub const TABLEACCESS_DENIED: u16 = 1142;
    pub const SPECIFIC_ACCESS_DENIED: u16 = 1227;
    /// The binlog file asked for cannot be found or read.
    pub const MASTER_FATAL_ERROR_READING_BINLOG: u16 = 1236;
}

/// Server errors of a statement that mean a missing privilege.
const MISSING_PRIVILEGE: [u16; 3] = [
    mysql_code::SPECIFIC_ACCESS_DENIED,
    mysql_code::TABLEACCESS_DENIED,
    mysql_code::DBACCESS_DENIED,
];

/// A transaction that `EXEC` aborted because a slot moved or was moving
/// while it was queued (resharding, failover): written again once the
/// client follows the slot.
pub(crate) fn aborted_by_redirect(e: &redis::RedisError) -> bool {
    let text = e.to_string().to_ascii_uppercase();
    (text.contains("TRANSACTION ABORTED") || text.contains("EXECABORT"))
        && ["MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN"]
            .iter()
            .any(|code| text.contains(code))
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether retrying the same work later may succeed: a lost connection,
    /// a server restarting, a timeout. The one place that decides what is
    /// retried; everything else stops the replicator with its message.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::SourceLost(_) | Error::MysqlConnect { .. } | Error::ReplicasBehind { .. } => {
                true
            }
            Error::Mysql { source, .. } => matches!(source, mysql_async::Error::Io(_)),
            Error::Redis { .. } if self.is_redis_out_of_memory() => true,
            Error::Redis { source, .. } | Error::RedisConnect { source, .. } => {
                use redis::ErrorKind;
                source.is_io_error()
                    || source.is_connection_dropped()
                    || source.is_connection_refusal()
                    || source.is_timeout()
                    || matches!(
                        source.kind(),
                        ErrorKind::Server(
                            redis::ServerErrorKind::BusyLoading
                                | redis::ServerErrorKind::TryAgain
                                // A cluster failing over or resharding,
                                // past the client's own retries.
                                | redis::ServerErrorKind::ClusterDown
                                | redis::ServerErrorKind::MasterDown
                                | redis::ServerErrorKind::Moved
                                | redis::ServerErrorKind::Ask
                                | redis::ServerErrorKind::ReadOnly
                        )
                    )
                    || source.kind() == ErrorKind::ClusterConnectionNotFound
                    || aborted_by_redirect(source)
            }
            _ => false,
        }
    }

    /// Redis refused a write for lack of memory (`maxmemory` reached with
    /// `noeviction`): an outage like an unreachable Redis, retried until
    /// memory is freed, never a crash and never a partial write (the whole
    /// `MULTI`/`EXEC` is discarded).
    pub fn is_redis_out_of_memory(&self) -> bool {
        match self {
            Error::Redis { source, .. } => {
                // Alone, or among the errors of an aborted transaction.
                let text = source.to_string();
                source.code() == Some("OOM")
                    || (text.contains("OOM")
                        && text.contains("command not allowed when used memory"))
            }
            _ => false,
        }
    }

    /// A failed MySQL statement; a missing privilege becomes a prerequisite
    /// error that names it.
    pub(crate) fn mysql(context: impl Into<String>, source: mysql_async::Error) -> Self {
        let context = context.into();
        match &source {
            mysql_async::Error::Server(e) if MISSING_PRIVILEGE.contains(&e.code) => {
                Error::Prerequisite(format!(
                    "the MySQL account lacks a privilege ({context}): {}. Grant what sql/grants.sql \
                     lists: SELECT on the database, REPLICATION SLAVE and REPLICATION CLIENT \
                     (BINLOG MONITOR on MariaDB), and RELOAD on MySQL 8",
                    e.message
                ))
            }
            _ => Error::Mysql { context, source },
        }
    }

    pub(crate) fn redis(context: impl Into<String>, source: redis::RedisError) -> Self {
        Error::Redis {
            context: context.into(),
            source,
        }
    }

    /// A spawned task that ended without its result.
    pub(crate) fn task(task: &'static str, e: tokio::task::JoinError) -> Self {
        Error::TaskFailed {
            task,
            message: e.to_string(),
        }
    }

    pub(crate) fn decode(table: &'static str, reason: impl Into<String>) -> Self {
        Error::Decode {
            table,
            reason: reason.into(),
        }
    }
}
