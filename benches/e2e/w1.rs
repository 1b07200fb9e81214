//! W1: the snapshot, against its limit, `redis-cli --pipe` of its own
//! commands.

use std::io::Write;
use std::process::Stdio;
use std::time::Instant;

use replicator::model::{Keys, Timestamp};
use replicator::sink::{pipeline, Scope};
use replicator::snapshot::{model_batches, COMMANDS_PER_BATCH};
use replicator::state::StateStore;

use super::env::{Args, Env, PREFIX};
use super::measure::{flush_bench_redis, measure};
use super::Row;

/// W1 and its limit, in alternating rounds: this machine's speed drifts by
/// as much as a factor of two over minutes, so each snapshot is compared
/// with a `--pipe` run taken right after it, and the medians are reported.
pub async fn w1(env: &Env, args: &Args, rows: &mut Vec<Row>) {
    let resp = env.work.join("w1.resp");
    let mut rounds = Vec::new();
    for round in 0..args.rounds.max(1) {
        let _ = std::fs::remove_dir_all(&env.state_dir);
        flush_bench_redis(env).await;
        let snapshot = measure(env, &["snapshot"]).await;
        if round == 0 {
            // The limit: W1's own final commands, as RESP, through redis-cli --pipe.
            let state = StateStore::open_read_only(&env.state_dir).unwrap();
            let mut out = std::io::BufWriter::new(std::fs::File::create(&resp).unwrap());
            model_batches(
                &state,
                &Keys::new(PREFIX),
                Timestamp::now(),
                COMMANDS_PER_BATCH,
                &Scope::All,
                |batch| {
                    out.write_all(&pipeline(batch.iter(), true).get_packed_pipeline())
                        .unwrap();
                    Ok(())
                },
            )
            .unwrap();
        }
        flush_bench_redis(env).await;
        let started = Instant::now();
        let status = std::process::Command::new("redis-cli")
            .args(["-p", &env.redis_port.to_string(), "-n", "9", "--pipe"])
            .stdin(std::fs::File::open(&resp).unwrap())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let pipe = started.elapsed().as_secs_f64();
        eprintln!(
            "W1 round {}: snapshot {:.1} s, --pipe {pipe:.1} s",
            round + 1,
            snapshot.wall.as_secs_f64()
        );
        rounds.push((snapshot, pipe));
    }
    let _ = std::fs::remove_file(&resp);

    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let secs = median(rounds.iter().map(|(s, _)| s.wall.as_secs_f64()).collect());
    let pipe = median(rounds.iter().map(|(_, p)| *p).collect());
    let ratios: Vec<f64> = rounds
        .iter()
        .map(|(s, p)| s.wall.as_secs_f64() / p)
        .collect();
    let peak = rounds.iter().map(|(s, _)| s.peak).max().unwrap_or(0);
    let cpu = median(rounds.iter().map(|(s, _)| s.cpu).collect());
    let out = &rounds[0].0.stdout;
    let number = |label: &str| -> u64 {
        out.lines()
            .filter(|l| l.contains(label))
            .map(|l| {
                l.split_whitespace()
                    .find_map(|w| w.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    };
    let read = number("rows read");
    let sessions = number("sessions written");
    let n = rounds.len();
    rows.push(Row(
        "W1 snapshot".into(),
        format!(
            "{secs:.1} s (median of {n}): {read} rows read ({:.0}/s), {sessions} sessions written ({:.0}/s), replicator CPU {cpu:.1} s (median), peak RSS {peak} MiB",
            read as f64 / secs,
            sessions as f64 / secs
        ),
    ));
    let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.2}x")).collect();
    rows.push(Row(
        "limit: redis-cli --pipe".into(),
        format!(
            "{pipe:.1} s (median) for W1's commands; W1 takes {:.2}x that (median; rounds {})",
            median(ratios.clone()),
            shown.join(", ")
        ),
    ));

    // Redis now holds W1's model again; give it W1's marker so that W2
    // streams on from the checkpoint instead of rebuilding.
    let id = StateStore::open_read_only(&env.state_dir)
        .unwrap()
        .checkpoint()
        .unwrap()
        .unwrap()
        .snapshot
        .id;
    let client = redis::Client::open(env.redis_url.as_str()).unwrap();
    let mut r = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("SET")
        .arg(format!("{PREFIX}replicator:snapshot"))
        .arg(id)
        .query_async(&mut r)
        .await
        .unwrap();
}
