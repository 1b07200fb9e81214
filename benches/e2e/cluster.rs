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

fn info_field(port: u16, section: &str, name: &str) -> f64 {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "info", section])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// CPU seconds all nodes have used, and commands the masters processed.
fn usage(ports: &[u16]) -> (f64, f64) {
    let cpu = ports
        .iter()
        .map(|&p| info_field(p, "cpu", "used_cpu_user") + info_field(p, "cpu", "used_cpu_sys"))
        .sum();
    let commands = ports
        .iter()
        .map(|&p| info_field(p, "stats", "total_commands_processed"))
        .sum();
    (cpu, commands)
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
    let snapshot = measure(&env, &["snapshot"]).await;
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
            "{secs:.1} s: {sessions} sessions written ({:.0}/s), replicator CPU {:.1} s, peak RSS {} MiB",
            sessions as f64 / secs,
            snapshot.cpu,
            snapshot.peak
        ),
    ));

    let changes = backlog(&env, args).await;
    let (cpu_before, commands_before) = usage(&ports);
    let run = measure(&env, &["run", "--exit-when-caught-up"]).await;
    let (cpu_after, commands_after) = usage(&ports);
    let secs = run.wall.as_secs_f64();
    rows.push(Row(
        "W2 catch-up, cluster".into(),
        format!(
            "{changes} row events in {secs:.1} s: {:.0} events/s, peak RSS {} MiB",
            changes as f64 / secs,
            run.peak
        ),
    ));
    rows.push(Row(
        "W2 CPU, cluster".into(),
        format!(
            "replicator {:.1} s, the 6 Redis nodes {:.1} s for {:.0} commands (replication included), of {:.1} s on 2 cores",
            run.cpu,
            cpu_after - cpu_before,
            commands_after - commands_before,
            2.0 * secs
        ),
    ));
}
