//! Crash trials: the replicator SIGKILLed at random instants while the
//! workload runs, restarted, and Redis checked against MySQL at the end.

use std::time::Duration;

use rand::Rng;

use super::servers::PrivateServices;
use super::workload::Workload;
use super::TestDb;

/// Crash trials: the workload runs while the replicator is SIGKILLed at
/// random instants (in a snapshot, while streaming, inside a transaction
/// applied in steps), and restarted; at the end Redis must match. Each
/// trial also prepares an XA transaction that the next trial resolves
/// (mostly commits): its rows are held across the kill.
/// `redis_url`: another Redis than the shared one (a cluster's node).
pub async fn crash_trials(redis_url: Option<String>, trials: u32, seed: u64) {
    // A server of its own: an XA COMMIT names no database, so the XA
    // transactions held here would reach every other test's stream.
    let mariadb = PrivateServices::mariadb("");
    let mut servers = mariadb.servers();
    if let Some(url) = redis_url {
        servers.redis_url = url;
    }
    let db = TestDb::on(servers, &format!("crash_{seed}")).await;
    let mut work = Workload::new(seed);
    db.sql(&work.initial()).await;
    db.sql(&work.xa_setup()).await;
    let log = db.log_path("crash");
    let mut held: Option<(String, bool)> = None;
    for trial in 0..trials {
        if trial % 4 == 0 {
            // No checkpoint: this run starts with a snapshot, and may die in
            // it. (A snapshot cannot see the rows of an XA transaction
            // prepared at the time, so none is left prepared across it.)
            resolve_xa(&db, held.take()).await;
            let _ = std::fs::remove_dir_all(&db.state_dir);
        }
        let mut child = db.sidecar(&["--max-transaction-rows", "300"], &log);
        let kill_after = Duration::from_millis(work.rng().random_range(0..400));
        let writes = async {
            for i in 0..25 {
                if i == 3 {
                    resolve_xa(&db, held.take()).await;
                }
                let sql = if i == 10 && trial % 2 == 1 {
                    work.large_transaction(1_000)
                } else {
                    work.transaction()
                };
                let _ = db.try_sql(&sql).await;
            }
        };
        let kill = async {
            tokio::time::sleep(kill_after).await;
            child.start_kill().unwrap();
        };
        tokio::join!(writes, kill);
        child.wait().await.unwrap();
        // Prepared while the replicator is down, resolved while the next
        // run streams: held across a restart (and maybe its kill). Only
        // once a run has streamed, so that there is a checkpoint.
        let streamed =
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("streaming the binlog"));
        if held.is_none() && streamed {
            let xid = format!("crash{seed}_{trial}");
            if db.try_xa_prepare(&xid, &work.xa_body()).await {
                held = Some((xid, work.rng().random_bool(0.75)));
            }
        }
    }
    resolve_xa(&db, held.take()).await;
    db.catch_up().await;
    let out = db.run(&["verify"]).await;
    assert!(
        out.status.success(),
        "seed {seed}: {}\n{}",
        super::stdout(&out),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let _ = std::fs::remove_file(log);
}

/// Commits (or rolls back) a prepared XA transaction. The server detaches
/// it from the connection that prepared it a moment after that connection
/// closes; until then it is unknown to the others.
pub async fn resolve_xa(db: &TestDb, held: Option<(String, bool)>) {
    let Some((xid, commit)) = held else { return };
    let verb = if commit { "COMMIT" } else { "ROLLBACK" };
    let sql = format!("XA {verb} '{xid}'");
    db.wait_for(&sql, Duration::from_secs(10), || async {
        db.try_sql(&sql).await.is_ok()
    })
    .await;
}
