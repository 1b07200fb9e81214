//! W5: a snapshot into a Redis that serves readers, without and with
//! `--snapshot-max-rate`: the snapshot's Redis command rate, and the
//! `HGETALL` latency of a reader meanwhile.
//!
//! The rate counts the commands the limit counts (`HSET`, `EXPIREAT`,
//! `ZADD`, `DEL`, from Redis's `INFO commandstats`), over the time Redis
//! was being written. The reader reads random live sessions back to back
//! over one connection, and only its reads while the snapshot wrote Redis
//! are counted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::seq::IndexedRandom;
use rand::SeedableRng;

use super::data::live_session_ids;
use super::env::{Args, Env, PREFIX};
use super::measure::{measure, quantile};
use super::Row;

/// The commands `--snapshot-max-rate` counts.
const LIMITED: [&str; 4] = ["hset", "expireat", "zadd", "del"];

pub async fn w5(env: &Env, args: &Args, rows: &mut Vec<Row>) {
    let ids = live_session_ids(env, Some(20_000)).await;
    // The readers read a namespace that is there, as in production: the
    // model first, when Redis does not hold it yet (W5 run alone).
    let client = redis::Client::open(env.redis_url.as_str()).unwrap();
    let mut r = client.get_multiplexed_async_connection().await.unwrap();
    let present: bool = redis::cmd("EXISTS")
        .arg(format!("{PREFIX}session:{}", ids[0]))
        .query_async(&mut r)
        .await
        .unwrap();
    if !present {
        let _ = std::fs::remove_dir_all(&env.state_dir);
        measure(env, &["snapshot"]).await;
    }
    let idle = read_while(env, &ids, async {
        tokio::time::sleep(Duration::from_secs(3)).await;
    })
    .await;
    rows.push(Row(
        "W5 HGETALL, no snapshot".into(),
        format!(
            "p50 {:.2} ms, p99 {:.2} ms ({} reads, {})",
            idle.p(0.5),
            idle.p(0.99),
            idle.n(),
            idle.found()
        ),
    ));
    for limit in [None, Some(args.snapshot_rate)] {
        let _ = std::fs::remove_dir_all(&env.state_dir);
        let (rate, reads) = snapshot_under_reads(env, &ids, limit).await;
        let name = match limit {
            None => "W5 snapshot, unlimited".to_string(),
            Some(l) => format!("W5 snapshot, --snapshot-max-rate {l}"),
        };
        let off = limit
            .map(|l| format!(" ({:+.1}% of the limit)", (rate / l as f64 - 1.0) * 100.0))
            .unwrap_or_default();
        rows.push(Row(
            name,
            format!(
                "{rate:.0} commands/s{off}; concurrent HGETALL p50 {:.2} ms, p99 {:.2} ms ({} reads, {})",
                reads.p(0.5),
                reads.p(0.99),
                reads.n(),
                reads.found()
            ),
        ));
    }
}

/// Takes a snapshot while reading, and returns its command rate over the
/// time it wrote Redis, with the reads of that time.
async fn snapshot_under_reads(env: &Env, ids: &[String], limit: Option<u64>) -> (f64, Latencies) {
    let limit = limit.map(|l| l.to_string());
    let mut command = vec!["snapshot"];
    if let Some(l) = &limit {
        command.extend(["--snapshot-max-rate", l]);
    }
    let client = redis::Client::open(env.redis_url.as_str()).unwrap();
    let mut stats = client.get_multiplexed_async_connection().await.unwrap();
    let mut samples = Vec::new();
    let reads = read_while(env, ids, async {
        let snapshot = measure(env, &command);
        tokio::pin!(snapshot);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = &mut snapshot => break,
                _ = tick.tick() => samples.push((Instant::now(), limited_calls(&mut stats).await)),
            }
        }
        samples.push((Instant::now(), limited_calls(&mut stats).await));
    })
    .await;
    // The writing window: from the last sample before the count moved to
    // the first one after it stopped.
    let first = samples
        .iter()
        .position(|s| s.1 != samples[0].1)
        .unwrap_or(1)
        - 1;
    let last_value = samples.last().unwrap().1;
    let last = samples.iter().position(|s| s.1 == last_value).unwrap();
    let (t0, c0) = samples[first];
    let (t1, c1) = samples[last];
    let rate = (c1 - c0) as f64 / (t1 - t0).as_secs_f64();
    (rate, reads.within(t0, t1))
}

async fn limited_calls(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            LIMITED.contains(&name).then_some(())?;
            rest.strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Reads random sessions back to back until `work` is done.
async fn read_while(
    env: &Env,
    ids: &[String],
    work: impl std::future::Future<Output = ()>,
) -> Latencies {
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, ids, url) = (stop.clone(), ids.to_vec(), env.redis_url.clone());
        tokio::spawn(async move {
            let client = redis::Client::open(url.as_str()).unwrap();
            let mut r = client.get_multiplexed_async_connection().await.unwrap();
            let mut rng = rand::rngs::StdRng::seed_from_u64(5);
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let id = ids.choose(&mut rng).unwrap();
                let started = Instant::now();
                let fields: Vec<Vec<u8>> = redis::cmd("HGETALL")
                    .arg(format!("{PREFIX}session:{id}"))
                    .query_async(&mut r)
                    .await
                    .unwrap();
                seen.push((started, started.elapsed(), !fields.is_empty()));
            }
            seen
        })
    };
    work.await;
    stop.store(true, Ordering::Relaxed);
    Latencies(reader.await.unwrap())
}

/// Reads: when each started, how long it took, whether it found the session.
struct Latencies(Vec<(Instant, Duration, bool)>);

impl Latencies {
    fn within(self, from: Instant, to: Instant) -> Latencies {
        Latencies(
            self.0
                .into_iter()
                .filter(|(t, ..)| *t >= from && *t <= to)
                .collect(),
        )
    }

    fn n(&self) -> usize {
        self.0.len()
    }

    fn found(&self) -> String {
        let found = self.0.iter().filter(|r| r.2).count();
        format!(
            "{:.1}% found",
            found as f64 * 100.0 / self.n().max(1) as f64
        )
    }

    /// The `q` quantile, in milliseconds.
    fn p(&self, q: f64) -> f64 {
        let mut v: Vec<Duration> = self.0.iter().map(|r| r.1).collect();
        v.sort();
        quantile(&v, q).as_secs_f64() * 1000.0
    }
}
