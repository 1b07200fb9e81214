//! End-to-end benchmark on the local services (`scripts/services start`):
//!
//!   scripts/bench                   # 100k users, 1M sessions
//!   scripts/bench --users 10000     # a smaller database
//!
//! W1 snapshot, the `redis-cli --pipe` limit of W1's own commands, W2
//! catch-up of a mixed backlog, W3 commit-to-visible lag at a fixed rate, W4
//! reading a session from MySQL (the four-table join) and from Redis, W5 a
//! snapshot under concurrent reads, without and with a rate limit; then W1
//! and W2 on the local Redis Cluster (`cluster`). Prints
//! one table. The database `bench_{users}` is generated with LOAD DATA and
//! kept for the next run; Redis database 9 belongs to the benchmark.

mod cluster;
mod data;
mod env;
mod measure;
mod w1;
mod w2;
mod w3;
mod w4;
mod w5;

use clap::Parser;

use env::{Args, ATTRS_PER_SESSION, SESSIONS_PER_USER};

/// One line of the printed table: the workload, and what it measured.
pub struct Row(pub String, pub String);

#[tokio::main]
async fn main() {
    // `cargo test --all-targets` runs bench targets too, without `--bench`:
    // the workloads need minutes and the local services, so only `cargo
    // bench` (or scripts/bench) runs them.
    if !std::env::args().any(|a| a == "--bench") {
        println!("e2e: skipped (run it with scripts/bench or cargo bench --bench e2e)");
        return;
    }
    let args = Args::parse();
    let env = env::env(&args);
    data::generate(&env, &args).await;
    let mut rows = Vec::new();
    let only = |w: &str| args.only.split(',').any(|o| o.trim() == w);
    if only("w1") {
        w1::w1(&env, &args, &mut rows).await;
    }
    if only("w2") {
        w2::w2(&env, &args, &mut rows).await;
    }
    if only("w3") {
        w3::w3(&env, &args, &mut rows).await;
    }
    if only("w4") {
        w4::w4(&env, &args, &mut rows).await;
    }
    if only("w5") {
        w5::w5(&env, &args, &mut rows).await;
    }
    if only("cluster") {
        cluster::cluster(&env, &args, &mut rows).await;
    }
    let host = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    println!();
    println!(
        "{} users, {} sessions ({}% expired), {} attributes; {} cores ({host})",
        args.users,
        args.users * SESSIONS_PER_USER,
        100 / 5,
        args.users * SESSIONS_PER_USER * ATTRS_PER_SESSION,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
    );
    println!("| workload | result |");
    println!("| --- | --- |");
    for Row(name, result) in rows {
        println!("| {name} | {result} |");
    }
}
