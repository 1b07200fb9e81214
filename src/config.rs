//! Settings shared by the commands, and URL redaction.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// TLS to MySQL, with the modes of the MySQL clients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SslMode {
    /// Never TLS.
    Disabled,
    /// TLS when the server offers it, without checking its certificate.
    #[default]
    Preferred,
    /// TLS or no connection, without checking the certificate.
    Required,
    /// TLS with a certificate signed by the CA (`--mysql-ssl-ca` or the system's roots).
    VerifyCa,
    /// As verify-ca, and the certificate must name the host.
    VerifyIdentity,
}

/// Where to read from and write to.
#[derive(Clone, Debug)]
pub struct Config {
    /// `mysql://user:pass@host:port/db`
    pub mysql_url: String,
    pub mysql_ssl_mode: SslMode,
    /// PEM file of the CA that signed the MySQL server's certificate.
    pub mysql_ssl_ca: Option<PathBuf>,
    /// PEM file of the CA that signed the Redis server's certificate (`rediss://`).
    pub redis_ca: Option<PathBuf>,
    /// `redis://` or `rediss://`
    pub redis_url: String,
    /// Prefix of every Redis key the replicator owns.
    pub key_prefix: String,
    /// `--redis-wait-replicas`, when set.
    pub redis_wait: Option<crate::sink::WaitReplicas>,
    /// The RocksDB state directory (not used by `verify`).
    pub state_dir: Option<PathBuf>,
}

/// The database named in a MySQL URL.
pub fn database_of(mysql_url: &str) -> Result<String> {
    let url = url::Url::parse(mysql_url).map_err(|e| {
        Error::Config(format!(
            "MYSQL_URL `{}` is not a URL ({e}); expected mysql://user:password@host:port/database",
            redact_url(mysql_url)
        ))
    })?;
    let db = url.path().trim_start_matches('/');
    if db.is_empty() {
        return Err(Error::Config(format!(
            "MYSQL_URL `{}` names no database; expected mysql://user:password@host:port/database",
            redact_url(mysql_url)
        )));
    }
    Ok(percent_encoding::percent_decode_str(db)
        .decode_utf8_lossy()
        .into_owned())
}

impl Config {
    pub fn state_dir(&self) -> Result<&PathBuf> {
        self.state_dir.as_ref().ok_or_else(|| {
            Error::Config("STATE_DIR is not set; give --state-dir or set STATE_DIR".into())
        })
    }
}

/// The URL with its password replaced by `***`, for logs and messages.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        // Not a URL: say nothing of its content, it may be a secret.
        Err(_) => "<unparseable URL>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("mysql://repl:s3cret@db:3306/app"),
            "mysql://repl:***@db:3306/app"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(redact_url("rediss://:pw@h:1"), "rediss://:***@h:1");
        assert_eq!(redact_url("not a url with pw"), "<unparseable URL>");
    }

    #[test]
    fn database_comes_from_the_path() {
        assert_eq!(database_of("mysql://u:p@h:1/my%2Ddb").unwrap(), "my-db");
        let err = database_of("mysql://u:p@h:1/").unwrap_err().to_string();
        assert!(
            err.contains("names no database") && !err.contains(":p@"),
            "{err}"
        );
    }
}
