//! W1 and W2 again, on the local Redis Cluster (3 masters, 3 replicas, all
//! on this machine) instead of the standalone Redis: the same database,
//! its own state directory and namespace.

use super::env::{Args, Env};
use super::measure::measure;
use super::w2::backlog;
use super::Row;

/// The cluster's nodes, from `REDIS_CLUSTER_URL` (its first node; the
/// others follow it).
fn ports() -> Option<Vec<u16>> {
    let url = url::Url::parse(&std::env::var("REDIS_CLUSTER_URL").ok()?).ok()?;
    let first = url.port()?;
    Some((first..first + 6).collect())
}

/// One node's `INFO section`, as `name:value` lines.
fn info(port: u16, section: &str) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "info", section])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

fn number(info: &str, name: &str) -> f64 {
    field(info, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// What the masters and the replicas have used so far: CPU seconds of
/// each side, and the commands the masters processed (a replica's
/// replayed commands are not counted).
#[derive(Clone, Copy, Default)]
struct Usage {
    master_cpu: f64,
    replica_cpu: f64,
    master_commands: f64,
}

fn usage(ports: &[u16]) -> Usage {
    let mut usage = Usage::default();
    for &port in ports {
        let cpu = info(port, "cpu");
        let cpu = number(&cpu, "used_cpu_user") + number(&cpu, "used_cpu_sys");
        if field(&info(port, "replication"), "role") == Some("master") {
            usage.master_cpu += cpu;
            usage.master_commands += number(&info(port, "stats"), "total_commands_processed");
        } else {
            usage.replica_cpu += cpu;
        }
    }
    usage
}

pub async fn cluster(env: &Env, args: &Args, rows: &mut Vec<Row>) {
    let Some(ports) = ports() else {
        rows.push(Row(
            "cluster".into(),
            "skipped: REDIS_CLUSTER_URL is not set (scripts/bench starts the local cluster)".into(),
        ));
        return;
    };
    let env = Env {
        redis_url: format!("redis://127.0.0.1:{}", ports[0]),
        redis_port: ports[0],
        state_dir: env.work.join(format!("state-{}-cluster", env.db)),
        ..env.clone()
    };
    // The local cluster belongs to the benchmark while it runs.
    for &port in &ports {
        let _ = std::process::Command::new("redis-cli")
            .args(["-p", &port.to_string(), "flushall"])
            .output();
    }
    let _ = std::fs::remove_dir_all(&env.state_dir);
    let before = usage(&ports);
    let snapshot = measure(&env, &["snapshot"]).await;
    let after = usage(&ports);
    let secs = snapshot.wall.as_secs_f64();
    let sessions: u64 = snapshot
        .stdout
        .lines()
        .filter(|l| l.contains("sessions written"))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.parse::<u64>().ok()))
        .sum();
    rows.push(Row(
        "W1 snapshot, cluster".into(),
        format!(
            "{secs:.1} s: {sessions} sessions written ({:.0}/s), replicator CPU {:.1} s, the 3 masters {:.1} s, the 3 replicas {:.1} s, peak RSS {} MiB",
            sessions as f64 / secs,
            snapshot.cpu,
            after.master_cpu - before.master_cpu,
            after.replica_cpu - before.replica_cpu,
            snapshot.peak
        ),
    ));

    let changes = backlog(&env, args).await;
    let before = usage(&ports);
    let run = measure(&env, &["run", "--exit-when-caught-up"]).await;
    let after = usage(&ports);
    let secs = run.wall.as_secs_f64();
    rows.push(Row(
        "W2 catch-up, cluster".into(),
        format!(
            "{changes} row events in {secs:.1} s: {:.0} events/s, peak RSS {} MiB",
            changes as f64 / secs,
            run.peak
        ),
    ));
    let commands = after.master_commands - before.master_commands;
    rows.push(Row(
        "W2 CPU, cluster".into(),
        format!(
            "replicator {:.1} s, the 3 masters {:.1} s for {commands:.0} commands ({:.1} per row event), the 3 replicas {:.1} s, of {:.1} s on 2 cores",
            run.cpu,
            after.master_cpu - before.master_cpu,
            commands / changes as f64,
            after.replica_cpu - before.replica_cpu,
            2.0 * secs
        ),
    ));
}
