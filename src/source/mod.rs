//! The MySQL side: connections, the prerequisite check, the consistent
//! snapshot read and the binlog stream, on one `mysql_async` stack.

mod assemble;
mod binlog;
mod columns;
mod decode;
pub mod image;
mod prereq;
mod read;
mod statement;
mod wire;

use mysql_async::prelude::Queryable;
use std::path::Path;

use mysql_async::{Conn, DriverError, Opts, OptsBuilder, SslOpts};

pub use crate::model::{Content, RowChange, SourceRow, Table};
pub use assemble::Piece;
pub use binlog::{BinlogReader, HEARTBEAT};
pub use prereq::{check_settings, ServerSettings};
pub use read::ConsistentRead;

use crate::config::{database_of, redact_url, SslMode};
use crate::error::{mysql_code, Error, Result};
use crate::position::BinlogPosition;

/// The source database and how to reach it.
#[derive(Clone)]
pub struct MySqlSource {
    opts: Opts,
    /// Without TLS: the fallback of `preferred` when the server has none.
    plain: Option<Opts>,
    database: String,
    redacted_url: String,
}

/// Which server family we talk to: they differ in how a consistent snapshot
/// learns its binlog position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    MariaDb,
    MySql,
}

impl MySqlSource {
    /// The source at `url`, with TLS as `ssl_mode` says (`ssl_ca`: the PEM
    /// file of the CA that signed the server's certificate).
    pub fn new(url: &str, ssl_mode: SslMode, ssl_ca: Option<&Path>) -> Result<Self> {
        let database = database_of(url)?;
        let redacted_url = redact_url(url);
        let opts = Opts::from_url(url)
            .map_err(|e| Error::Config(format!("MYSQL_URL `{redacted_url}` is not valid: {e}")))?;
        let plain = OptsBuilder::from_opts(opts)
            .prefer_socket(false)
            .init(vec!["SET time_zone = '+00:00'", "SET NAMES utf8mb4"]);
        let tls = match ssl_mode {
            SslMode::Disabled => None,
            SslMode::Preferred | SslMode::Required => Some(
                SslOpts::default()
                    .with_danger_accept_invalid_certs(true)
                    .with_danger_skip_domain_validation(true),
            ),
            SslMode::VerifyCa => Some(SslOpts::default().with_danger_skip_domain_validation(true)),
            SslMode::VerifyIdentity => Some(SslOpts::default()),
        };
        let tls = tls.map(|t| match ssl_ca {
            Some(ca) => t.with_root_certs(vec![ca.to_owned().into()]),
            None => t,
        });
        let (opts, plain) = match tls {
            None => (plain.into(), None),
            Some(tls) => {
                let with_tls = plain.clone().ssl_opts(tls).into();
                let fallback = (ssl_mode == SslMode::Preferred).then(|| plain.into());
                (with_tls, fallback)
            }
        };
        Ok(MySqlSource {
            opts,
            plain,
            database,
            redacted_url,
        })
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn redacted_url(&self) -> &str {
        &self.redacted_url
    }

    /// A new connection, in UTC and utf8mb4.
    pub async fn connect(&self) -> Result<Conn> {
        let connected = match Conn::new(self.opts.clone()).await {
            Err(mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer))
                if self.plain.is_some() =>
            {
                tracing::debug!(
                    "the MySQL server offers no TLS: connecting without (ssl mode preferred)"
                );
                Conn::new(self.plain.clone().expect("checked")).await
            }
            other => other,
        };
        connected.map_err(|source| match &source {
            mysql_async::Error::Server(e) if e.code == mysql_code::DBACCESS_DENIED => Error::Prerequisite(format!(
                "the MySQL account has no privilege on database `{db}` ({}): GRANT SELECT ON `{db}`.* \
                 to the account (see sql/grants.sql)",
                e.message,
                db = self.database
            )),
            mysql_async::Error::Server(e) if e.code == mysql_code::ACCESS_DENIED => Error::Prerequisite(format!(
                "MySQL at {} refused the account ({}): check the user and password in MYSQL_URL",
                self.redacted_url, e.message
            )),
            _ => Error::MysqlConnect {
                url: self.redacted_url.clone(),
                source,
            },
        })
    }

    /// The server's current binlog position (the end of its binlog).
    pub async fn current_position(&self) -> Result<BinlogPosition> {
        let mut conn = self.connect().await?;
        let position = Self::position_on(&mut conn).await;
        let _ = conn.disconnect().await;
        position
    }

    /// The server's current binlog position, asked over `conn`.
    pub async fn position_on(conn: &mut Conn) -> Result<BinlogPosition> {
        read::binary_log_status(conn).await
    }

    /// Reads the settings the replicator depends on.
    pub async fn settings(&self, conn: &mut Conn) -> Result<ServerSettings> {
        type SettingsRow = (String, Option<String>, Option<String>, Option<String>, u32);
        let row: Option<SettingsRow> = conn
            .query_first(
                "SELECT VERSION(), @@GLOBAL.log_bin, @@GLOBAL.binlog_format, \
                 @@GLOBAL.binlog_row_image, @@GLOBAL.server_id",
            )
            .await
            .map_err(|e| Error::mysql("reading server settings", e))?;
        let (version, log_bin, binlog_format, binlog_row_image, server_id) =
            row.ok_or_else(|| Error::Prerequisite("the server returned no settings".into()))?;
        let tables: Vec<String> = conn
            .exec(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
                (&self.database,),
            )
            .await
            .map_err(|e| Error::mysql("listing tables", e))?;
        if tables.is_empty() {
            let visible: Option<u64> = conn
                .exec_first(
                    "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?",
                    (&self.database,),
                )
                .await
                .map_err(|e| Error::mysql("looking up the database", e))?;
            if visible == Some(0) {
                return Err(Error::Prerequisite(format!(
                    "database `{db}` does not exist, or the MySQL account has no privilege on it: \
                     check the database in MYSQL_URL, and GRANT SELECT ON `{db}`.* to the account \
                     (see sql/grants.sql)",
                    db = self.database
                )));
            }
        }
        Ok(ServerSettings {
            flavor: if version.to_ascii_lowercase().contains("mariadb") {
                Flavor::MariaDb
            } else {
                Flavor::MySql
            },
            version,
            log_bin: matches!(log_bin.as_deref(), Some("1" | "ON")),
            binlog_format: binlog_format.unwrap_or_default(),
            binlog_row_image: binlog_row_image.unwrap_or_default(),
            server_id,
            database: self.database.clone(),
            tables,
        })
    }
}
