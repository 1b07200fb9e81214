//! A private Redis Cluster (3 masters, 3 replicas) per test, started by
//! `scripts/services start cluster` on free ports with data in a directory
//! of its own, and the means to break it: kill a node, start it again, move
//! slots.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::servers::PrivateServices;
use super::Servers;

pub struct PrivateCluster {
    pub dir: PathBuf,
    /// The first node's port; the others follow it.
    pub port: u16,
}

/// One line of `CLUSTER NODES`.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub id: String,
    pub port: u16,
    pub master: bool,
    /// A replica's master.
    pub master_id: Option<String>,
    pub failed: bool,
    /// The slot ranges a master serves.
    pub slots: Vec<(u16, u16)>,
}

/// Six consecutive free ports whose cluster bus ports (+10000) are free too.
fn free_base() -> u16 {
    use rand::Rng;
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    loop {
        let base = rand::rng().random_range(20_000u16..29_000);
        if (base..base + 6).all(|p| free(p) && free(p + 10_000)) {
            return base;
        }
    }
}

impl PrivateCluster {
    /// Starts a fresh cluster and waits for `cluster_state:ok`.
    pub fn start() -> PrivateCluster {
        let mut attempts = Vec::new();
        for _ in 0..3 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let c = PrivateCluster {
                dir: std::env::temp_dir()
                    .join(format!("replicator-cluster-{}-{nanos}", std::process::id())),
                port: free_base(),
            };
            let out = c.script(&["start", "cluster"]);
            if out.status.success() {
                return c;
            }
            attempts.push(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        panic!(
            "scripts/services start cluster failed 3 times:\n{}",
            attempts.join("\n")
        );
    }

    fn script(&self, args: &[&str]) -> std::process::Output {
        Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services"))
            .args(args)
            .env("REPLICATOR_SERVICES_DIR", &self.dir)
            .env("REPLICATOR_CLUSTER_PORT", self.port.to_string())
            .output()
            .unwrap()
    }

    /// The URL of one node: the replicator finds the others.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The shared MariaDB (or `mariadb`'s) with this cluster as Redis.
    pub fn servers(&self, mariadb: Option<&PrivateServices>) -> Servers {
        let base = mariadb.map_or_else(Servers::shared, |m| m.servers());
        Servers {
            redis_url: self.url(),
            ..base
        }
    }

    pub fn ports(&self) -> Vec<u16> {
        (self.port..self.port + 6).collect()
    }

    /// `redis-cli` against one node, its output.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-p")
            .arg(port.to_string())
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The cluster as one live node sees it.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        for port in self.ports() {
            let text = self.cli(port, &["cluster", "nodes"]);
            if text.trim().is_empty() {
                continue;
            }
            return text.lines().filter_map(parse_node).collect();
        }
        panic!("no node of the cluster answers");
    }

    /// The live master that serves `slot`.
    pub fn master_of(&self, slot: u16) -> NodeInfo {
        self.nodes()
            .into_iter()
            .find(|n| n.master && !n.failed && n.slots.iter().any(|&(a, b)| a <= slot && slot <= b))
            .expect("a master serves the slot")
    }

    /// The replicas of a master.
    pub fn replicas_of(&self, master: &NodeInfo) -> Vec<NodeInfo> {
        self.nodes()
            .into_iter()
            .filter(|n| n.master_id.as_deref() == Some(&master.id))
            .collect()
    }

    fn pid(&self, port: u16) -> Option<i32> {
        let file = self.dir.join(format!("cluster/{port}/redis.pid"));
        std::fs::read_to_string(file).ok()?.trim().parse().ok()
    }

    /// SIGKILLs one node (its data is gone: the nodes run without
    /// persistence; its nodes.conf stays).
    pub fn kill(&self, port: u16) {
        if let Some(pid) = self.pid(port) {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(port, &["ping"]).trim() == "PONG" {
            assert!(Instant::now() < deadline, "node {port} did not die");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal (`STOP`, `CONT`) to one node's process.
    pub fn signal(&self, port: u16, signal: &str) {
        let pid = self.pid(port).expect("the node runs");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Sets `key` on the node at `port` to `bytes` bytes of filler, with
    /// `redis-cli -x`.
    pub fn fill(&self, port: u16, key: &str, bytes: usize) {
        let file = self.dir.join("filler");
        std::fs::write(&file, vec![b'x'; bytes]).unwrap();
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "-x", "set", key])
            .stdin(std::fs::File::open(&file).unwrap())
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("OK"),
            "{out:?}"
        );
    }

    /// Starts a stopped node again, with its nodes.conf.
    pub fn restart(&self, port: u16) {
        let out = self.script(&["start", "cluster-node", &port.to_string()]);
        assert!(
            out.status.success(),
            "restarting node {port}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Waits until every live node reports `cluster_state:ok` and `check`
    /// holds for the node list.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&[NodeInfo]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            let ok = self.ports().iter().all(|&p| {
                let info = self.cli(p, &["cluster", "info"]);
                info.trim().is_empty() || info.contains("cluster_state:ok")
            });
            if ok && check(&self.nodes()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the node at `port` serves as a master.
    pub async fn wait_promoted(&self, port: u16) {
        self.wait_until("a replica's promotion", Duration::from_secs(30), |nodes| {
            nodes.iter().any(|n| n.port == port && n.master)
        })
        .await;
    }

    /// Starts the killed old master at `port` again (empty, with its
    /// nodes.conf) and waits until it has rejoined as a replica.
    pub async fn rejoin_as_replica(&self, port: u16) {
        self.restart(port);
        self.wait_until(
            "the old master as a replica",
            Duration::from_secs(30),
            |nodes| {
                nodes
                    .iter()
                    .any(|n| n.port == port && !n.master && !n.failed)
            },
        )
        .await;
    }

    /// `redis-cli --cluster reshard`: moves `slots` slots from one master to
    /// another, key by key (`MIGRATE`), while the cluster serves.
    pub fn reshard(&self, from: &NodeInfo, to: &NodeInfo, slots: u32) -> std::process::Output {
        reshard(self.port, from, to, slots)
    }

    /// A cluster-aware connection, for a test's own reads.
    pub async fn connection(&self) -> redis::cluster_async::ClusterConnection {
        redis::cluster::ClusterClient::new(vec![self.url()])
            .unwrap()
            .get_async_connection()
            .await
            .unwrap()
    }
}

/// [`PrivateCluster::reshard`] through the node on `port`, for a blocking
/// thread of its own.
pub fn reshard(port: u16, from: &NodeInfo, to: &NodeInfo, slots: u32) -> std::process::Output {
    {
        Command::new("redis-cli")
            .args(["--cluster", "reshard", &format!("127.0.0.1:{port}")])
            .args(["--cluster-from", &from.id, "--cluster-to", &to.id])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .args(["--cluster-pipeline", "10"])
            .output()
            .unwrap()
    }
}

fn parse_node(line: &str) -> Option<NodeInfo> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 8 {
        return None;
    }
    let port = f[1].split('@').next()?.rsplit(':').next()?.parse().ok()?;
    let flags = f[2];
    let slots = f[8..]
        .iter()
        .filter(|s| !s.starts_with('['))
        .filter_map(|s| {
            let mut ends = s.split('-').map(|n| n.parse::<u16>());
            let a = ends.next()?.ok()?;
            let b = ends.next().and_then(|r| r.ok()).unwrap_or(a);
            Some((a, b))
        })
        .collect();
    Some(NodeInfo {
        id: f[0].to_string(),
        port,
        master: flags.contains("master"),
        master_id: (f[3] != "-").then(|| f[3].to_string()),
        failed: flags.contains("fail") && !flags.contains("fail?"),
        slots,
    })
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.script(&["stop", "cluster"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
