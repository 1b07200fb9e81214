//! Private servers, for tests that restart, reconfigure or break them
//! without disturbing the tests that share `scripts/services`' instances.
//! Started by the same script, on free ports, with data in a directory of
//! their own.

use std::path::PathBuf;
use std::process::Command;

use super::Servers;

/// Which of the two a [`PrivateServices`] runs itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    MariaDb,
    Redis,
    Both,
}

impl Which {
    fn arg(self) -> &'static str {
        match self {
            Which::MariaDb => "mariadb",
            Which::Redis => "redis",
            Which::Both => "all",
        }
    }
}

pub struct PrivateServices {
    pub dir: PathBuf,
    pub mariadb_port: u16,
    pub redis_port: u16,
    which: Which,
    mariadb_args: String,
    redis_args: String,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PrivateServices {
    /// Starts `which` with extra server options.
    pub fn start(which: Which, mariadb_args: &str, redis_args: &str) -> PrivateServices {
        let n = super::COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Process ids come round again in a long run: the clock keeps a
        // directory from an earlier test binary from ever being reused.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "replicator-private-{}-{n}-{nanos}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = PrivateServices {
            dir,
            mariadb_port: free_port(),
            redis_port: free_port(),
            which,
            mariadb_args: mariadb_args.to_string(),
            redis_args: redis_args.to_string(),
        };
        // A free port can be taken by another test between the check and
        // the server's start: try again, on other ports and from an empty
        // directory, and report every attempt if none worked.
        let mut attempts = Vec::new();
        for _ in 0..3 {
            let out = s.try_up(which);
            if out.status.success() {
                return s;
            }
            attempts.push(format!(
                "ports {} / {}:\n{}",
                s.mariadb_port,
                s.redis_port,
                String::from_utf8_lossy(&out.stderr)
            ));
            s.down(Which::Both);
            let _ = std::fs::remove_dir_all(&s.dir);
            s.mariadb_port = free_port();
            s.redis_port = free_port();
        }
        panic!(
            "scripts/services start failed 3 times:\n{}",
            attempts.join("\n")
        );
    }

    fn try_up(&self, which: Which) -> std::process::Output {
        self.script(&["start", which.arg()])
    }

    /// A private MariaDB (and the shared Redis).
    pub fn mariadb(mariadb_args: &str) -> PrivateServices {
        Self::start(Which::MariaDb, mariadb_args, "")
    }

    /// A private Redis (and the shared MariaDB).
    pub fn redis(redis_args: &str) -> PrivateServices {
        Self::start(Which::Redis, "", redis_args)
    }

    fn script(&self, args: &[&str]) -> std::process::Output {
        Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services"))
            .args(args)
            .env("REPLICATOR_SERVICES_DIR", &self.dir)
            .env("REPLICATOR_MARIADB_PORT", self.mariadb_port.to_string())
            .env("REPLICATOR_REDIS_PORT", self.redis_port.to_string())
            .env("REPLICATOR_MARIADB_ARGS", &self.mariadb_args)
            .env("REPLICATOR_REDIS_ARGS", &self.redis_args)
            .output()
            .unwrap()
    }

    /// Starts (again) one or both of this instance's servers.
    pub fn up(&self, which: Which) {
        let out = self.try_up(which);
        assert!(
            out.status.success(),
            "scripts/services start failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops one or both of this instance's servers (data kept).
    pub fn down(&self, which: Which) {
        self.script(&["stop", which.arg()]);
    }

    /// The URLs, with the shared server standing in for one not run here.
    pub fn servers(&self) -> Servers {
        let shared = Servers::shared();
        let mariadb = self.which != Which::Redis;
        let redis = self.which != Which::MariaDb;
        Servers {
            admin_url: if mariadb {
                format!(
                    "mysql://admin:admin-local-only@127.0.0.1:{}/",
                    self.mariadb_port
                )
            } else {
                shared.admin_url
            },
            mysql_url: if mariadb {
                format!(
                    "mysql://replicator:replicator-local-only@127.0.0.1:{}/sessions",
                    self.mariadb_port
                )
            } else {
                shared.mysql_url
            },
            redis_url: if redis {
                format!("redis://127.0.0.1:{}/0", self.redis_port)
            } else {
                shared.redis_url
            },
        }
    }
}

impl Drop for PrivateServices {
    fn drop(&mut self) {
        self.down(Which::Both);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
