//! Running the replicator and sampling what it costs: wall time, CPU time
//! and peak RSS from `/proc`, and Redis's own CPU time from `INFO`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use super::env::{replicator_command, Env};

/// A finished run of the replicator.
pub struct Measured {
    pub wall: Duration,
    /// Peak RSS, MiB.
    pub peak: u64,
    /// CPU time (user + system), seconds, as last seen before it exited.
    pub cpu: f64,
    pub stdout: String,
}

/// Runs the replicator to completion, watching its memory and CPU time.
pub async fn measure(env: &Env, args: &[&str]) -> Measured {
    let started = Instant::now();
    let mut child = replicator_command(env, args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut peak = 0;
    let mut stdout = child.stdout.take().unwrap();
    let reader = tokio::spawn(async move {
        let mut s = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut s)
            .await
            .unwrap();
        s
    });
    let mut cpu = 0.0;
    loop {
        peak = peak.max(peak_rss(pid).unwrap_or(0));
        cpu = cpu_seconds(pid).unwrap_or(cpu);
        match tokio::time::timeout(Duration::from_millis(20), child.wait()).await {
            Ok(status) => {
                assert!(status.unwrap().success(), "replicator {args:?} failed");
                break;
            }
            Err(_) => continue,
        }
    }
    Measured {
        wall: started.elapsed(),
        peak,
        cpu,
        stdout: reader.await.unwrap(),
    }
}

/// utime + stime of a process (fields 14 and 15 of /proc/pid/stat, in
/// clock ticks of 1/100 s).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Redis's own CPU time (user + system) and commands executed so far.
pub async fn redis_usage(env: &Env) -> (f64, u64) {
    let client = redis::Client::open(env.redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("all")
        .query_async(&mut conn)
        .await
        .unwrap();
    let field = |name: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let cpu = field("used_cpu_user") + field("used_cpu_sys");
    (cpu, field("total_commands_processed") as u64)
}

/// The `q` quantile of `sorted`, or zero when it is empty.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let at = ((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(at).copied().unwrap_or_default()
}

pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024)
}

pub async fn flush_bench_redis(env: &Env) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(env.redis_url.as_str()).unwrap();
    let mut r = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("FLUSHDB")
        .arg("ASYNC")
        .query_async(&mut r)
        .await
        .unwrap();
    r
}
