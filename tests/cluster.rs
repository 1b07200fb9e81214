//! The model on a Redis Cluster (3 masters, 3 replicas, each test its own):
//! snapshot, streaming and `verify`; crashes of the replicator; a master
//! killed and failed over; a master restarted empty with no replica to
//! take over; slots moved mid-stream.

mod common;

use std::time::Duration;

use common::cluster::{NodeInfo, PrivateCluster};
use common::workload::Workload;
use common::TestDb;
use tokio::process::Child;

/// A database with the workload's starting rows, Redis on the cluster, and
/// the sidecar streaming, its snapshot written.
async fn sidecar_on(
    cluster: &PrivateCluster,
    name: &str,
    seed: u64,
    extra: &[&str],
) -> (TestDb, Workload, std::path::PathBuf, Child) {
    let db = TestDb::on(cluster.servers(None), name).await;
    let mut work = Workload::new(seed);
    db.sql(&work.initial()).await;
    let log = db.log_path(name);
    let child = db.sidecar(extra, &log);
    db.wait_for_log(&log, "streaming the binlog", Duration::from_secs(60))
        .await;
    (db, work, log, child)
}

async fn transactions(db: &TestDb, work: &mut Workload, n: usize) {
    for _ in 0..n {
        let _ = db.try_sql(&work.transaction()).await;
    }
}

/// Stops the sidecar, applies what it had not, and checks every field of
/// every session on every master. Returns the sidecar's log.
async fn stop_catch_up_and_verify(db: &TestDb, mut child: Child, log: &std::path::Path) -> String {
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    db.catch_up().await;
    let out = db.run(&["verify"]).await;
    assert!(
        out.status.success(),
        "verify: {}{}\nsidecar log:\n{text}",
        common::stdout(&out),
        common::stderr(&out)
    );
    text
}

/// Waits until the sidecar's checkpoint reaches the server's binlog
/// position: everything committed so far is counted as applied.
async fn checkpoint_at_the_server(db: &TestDb) {
    let server: Vec<(String, u64, String, String)> = db.query("SHOW MASTER STATUS").await;
    let (file, offset) = (server[0].0.clone(), server[0].1);
    let what = "the checkpoint at the server's position";
    db.wait_for(what, Duration::from_secs(30), || async {
        let (at_file, at) = db.checkpoint().await;
        at_file == file && at >= offset
    })
    .await;
}

/// The master of the slot a session key of this test hashes to.
fn some_master(cluster: &PrivateCluster, db: &TestDb) -> NodeInfo {
    let key = db.key("session:watch");
    let slot: u16 = cluster
        .cli(cluster.port, &["cluster", "keyslot", &key])
        .trim()
        .parse()
        .unwrap();
    cluster.master_of(slot)
}

#[tokio::test]
async fn snapshot_stream_and_verify_on_a_cluster() {
    let cluster = PrivateCluster::start();
    let (db, mut work, log, child) = sidecar_on(&cluster, "cluster_stream", 31, &[]).await;
    transactions(&db, &mut work, 150).await;
    let text = stop_catch_up_and_verify(&db, child, &log).await;
    assert!(text.contains("Redis Cluster"), "{text}");
    // The namespace is spread over the three masters.
    for master in cluster.nodes().iter().filter(|n| n.master) {
        let keys: u64 = cluster
            .cli(master.port, &["dbsize"])
            .trim()
            .parse()
            .unwrap();
        assert!(keys > 100, "master {} holds {keys} keys", master.port);
    }
    // And a cold snapshot into the filled namespace finds nothing stale.
    let out = db.run_ok(&["snapshot"]).await;
    assert!(common::stdout(&out).contains("stale keys removed         0"));
    db.assert_verified().await;
}

#[tokio::test]
async fn crash_trials_on_a_cluster() {
    let cluster = PrivateCluster::start();
    common::crash::crash_trials(Some(cluster.url()), 4, 41).await;
}

/// A master SIGKILLed mid-stream: its replica takes over. With
/// `--redis-wait-replicas 1` every group the checkpoint counts is on a
/// replica before it is counted, so nothing is lost; while the new master
/// has no replica the stream waits, position kept, and carries on once the
/// old master rejoins as its replica.
#[tokio::test]
async fn a_master_killed_and_failed_over_loses_nothing_with_wait_replicas() {
    let cluster = PrivateCluster::start();
    let wait = [
        "--redis-wait-replicas",
        "1",
        "--redis-wait-timeout-ms",
        "500",
    ];
    let (db, mut work, log, child) = sidecar_on(&cluster, "cluster_failover", 32, &wait).await;
    transactions(&db, &mut work, 40).await;
    let victim = some_master(&cluster, &db);
    let replica = cluster.replicas_of(&victim)[0].clone();
    let writes = async { transactions(&db, &mut work, 80).await };
    let kill = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.kill(victim.port);
    };
    tokio::join!(writes, kill);
    cluster.wait_promoted(replica.port).await;
    transactions(&db, &mut work, 40).await;
    // The old master comes back empty and becomes the new one's replica.
    cluster.rejoin_as_replica(victim.port).await;
    // The sidecar itself carries on, with nothing lost.
    db.wait_for_log(&log, "Redis is back after", Duration::from_secs(60))
        .await;
    transactions(&db, &mut work, 40).await;
    db.wait_for(
        "Redis to match, from the sidecar alone",
        Duration::from_secs(30),
        || async { db.run(&["verify"]).await.status.success() },
    )
    .await;
    let text = stop_catch_up_and_verify(&db, child, &log).await;
    assert!(text.contains("Redis unavailable"), "{text}");
}

/// Redis replicates asynchronously. Here the replica of the master that
/// holds the watched session is paused (SIGSTOP) and its link filled up
/// (64 MB of filler written to the master in the session's slot, more
/// than the sockets hold), a change is applied, the master is SIGKILLed
/// and the paused replica is made master (`CLUSTER FAILOVER TAKEOVER`): it
/// never got the change. Without
/// `--redis-wait-replicas` the checkpoint had already counted it, and the
/// loss is silent and permanent (verify finds it); with it, the checkpoint
/// waited, and the change is written again to the new master.
async fn failover_behind_a_paused_replica(wait: bool) -> (bool, String) {
    let cluster = PrivateCluster::start();
    let extra: &[&str] = match wait {
        true => &[
            "--redis-wait-replicas",
            "1",
            "--redis-wait-timeout-ms",
            "200",
        ],
        false => &[],
    };
    let name = format!("cluster_paused_replica_{wait}");
    let (db, mut work, log, child) = sidecar_on(&cluster, &name, 35, extra).await;
    transactions(&db, &mut work, 20).await;
    // Everything before the change is counted, on the replicas too.
    checkpoint_at_the_server(&db).await;
    let master = some_master(&cluster, &db);
    let replica = cluster.replicas_of(&master)[0].clone();
    // And the replica has acknowledged all of it.
    db.wait_for("the replica in step", Duration::from_secs(30), || async {
        let info = cluster.cli(master.port, &["info", "replication"]);
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        let master_offset = field("master_repl_offset:");
        let replica_offset = field("slave0:").and_then(|v| {
            v.split(',')
                .find_map(|kv| kv.strip_prefix("offset="))
                .map(str::to_string)
        });
        master_offset.is_some() && master_offset == replica_offset
    })
    .await;
    cluster.signal(replica.port, "STOP");
    // Outside the namespace's patterns, in the watched session's slot.
    let filler = format!("{{{}}}:filler", db.key("session:watch"));
    cluster.fill(master.port, &filler, 64 << 20);
    db.sql("UPDATE users SET username = 'unreplicated' WHERE user_id = 1000")
        .await;
    let key = db.key("session:watch");
    db.wait_for(
        "the change on the master",
        Duration::from_secs(30),
        // Asked of the master itself: a cluster client would also wait on
        // the paused replica.
        || async { cluster.cli(master.port, &["hget", &key, "username"]).trim() == "unreplicated" },
    )
    .await;
    if !wait {
        // The checkpoint counts the change.
        checkpoint_at_the_server(&db).await;
    }
    cluster.kill(master.port);
    cluster.signal(replica.port, "CONT");
    cluster.cli(replica.port, &["cluster", "failover", "takeover"]);
    cluster.wait_promoted(replica.port).await;
    cluster.rejoin_as_replica(master.port).await;
    // Whatever the sidecar still had to write, it writes now.
    db.sql("UPDATE users SET email = 'after@x' WHERE user_id = 1001")
        .await;
    db.wait_for(
        "the stream after the failover",
        Duration::from_secs(60),
        || async {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            !text.contains("Redis unavailable") || text.contains("Redis is back after")
        },
    )
    .await;
    let mut child = child;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    db.catch_up().await;
    let out = db.run(&["verify"]).await;
    (out.status.success(), common::stdout(&out))
}

#[tokio::test]
async fn a_failover_behind_a_paused_replica_loses_writes_without_wait_replicas() {
    let (matched, report) = failover_behind_a_paused_replica(false).await;
    assert!(!matched, "the loss was expected to show:\n{report}");
    assert!(report.contains("session:watch"), "{report}");
}

#[tokio::test]
async fn a_failover_behind_a_paused_replica_loses_nothing_with_wait_replicas() {
    let (matched, report) = failover_behind_a_paused_replica(true).await;
    assert!(matched, "{report}");
}

/// A master that restarts empty while its replica is down: its slots come
/// back with nothing in them and no failover hides it. Only those slots
/// are rebuilt from the state, and the log says how many sessions.
#[tokio::test]
async fn a_master_restarted_empty_has_only_its_slots_rebuilt() {
    let cluster = PrivateCluster::start();
    let (db, mut work, log, child) = sidecar_on(&cluster, "cluster_lost_shard", 33, &[]).await;
    transactions(&db, &mut work, 30).await;
    let victim = some_master(&cluster, &db);
    let replica = cluster.replicas_of(&victim)[0].clone();
    cluster.kill(replica.port);
    cluster.kill(victim.port);
    cluster.restart(victim.port);
    cluster
        .wait_until("the master back", Duration::from_secs(30), |nodes| {
            nodes
                .iter()
                .any(|n| n.port == victim.port && n.master && !n.failed)
        })
        .await;
    let served: u32 = victim
        .slots
        .iter()
        .map(|&(a, b)| u32::from(b - a) + 1)
        .sum();
    let expected = format!("in {served} lost hash slots");
    // A write to any of its slots, or the periodic check, finds it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains(&expected)) {
        assert!(
            std::time::Instant::now() < deadline,
            "no partial rebuild of {served} slots:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let _ = db.try_sql(&work.transaction()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    transactions(&db, &mut work, 30).await;
    let text = stop_catch_up_and_verify(&db, child, &log).await;
    let line = text.lines().find(|l| l.contains(&expected)).unwrap();
    let rebuilt: u64 = line
        .split("rebuilt ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    let live: Vec<(i64,)> = db
        .query("SELECT COUNT(*) FROM user_sessions WHERE expires_at > NOW()")
        .await;
    assert!(rebuilt > 0 && (rebuilt as i64) < live[0].0, "{line}");
    assert!(!text.contains("rebuilding the namespace from"), "{text}");
}

/// On an idle stream, the check of every slot's marker (every 10 s) finds
/// a slot whose keys are gone, with no write to show it, and rebuilds that
/// slot alone.
#[tokio::test]
async fn an_idle_stream_finds_a_lost_slot_by_the_periodic_check() {
    let cluster = PrivateCluster::start();
    let (db, mut work, log, child) = sidecar_on(&cluster, "cluster_idle_check", 35, &[]).await;
    transactions(&db, &mut work, 20).await;
    checkpoint_at_the_server(&db).await;
    let live: Vec<(String,)> = db
        .query("SELECT session_id FROM user_sessions WHERE expires_at > NOW() LIMIT 1")
        .await;
    let key = db.key(&format!("session:{}", live[0].0));
    let slot: u16 = cluster
        .cli(cluster.port, &["cluster", "keyslot", &key])
        .trim()
        .parse()
        .unwrap();
    let master = cluster.master_of(slot);
    let listed = cluster.cli(
        master.port,
        &["cluster", "getkeysinslot", &slot.to_string(), "1000"],
    );
    let keys: Vec<&str> = listed.lines().filter(|k| !k.is_empty()).collect();
    assert!(
        keys.contains(&key.as_str()) && keys.iter().any(|k| k.contains("replicator:snapshot")),
        "{keys:?}"
    );
    for k in &keys {
        cluster.cli(master.port, &["del", k]);
    }
    db.wait_for_log(&log, "in 1 lost hash slots", Duration::from_secs(40))
        .await;
    assert_eq!(cluster.cli(master.port, &["exists", &key]).trim(), "1");
    let text = stop_catch_up_and_verify(&db, child, &log).await;
    assert!(!text.contains("rebuilding the namespace from"), "{text}");
}

/// `redis-cli --cluster reshard` moves a thousand slots, key by key, while
/// the stream writes: `MOVED` and `ASK` are followed, nothing is lost.
#[tokio::test]
async fn slots_moved_mid_stream_lose_nothing() {
    let cluster = PrivateCluster::start();
    let (db, mut work, log, child) = sidecar_on(&cluster, "cluster_reshard", 34, &[]).await;
    let masters: Vec<NodeInfo> = cluster.nodes().into_iter().filter(|n| n.master).collect();
    let (from, to) = (masters[0].clone(), masters[1].clone());
    let writes = async { transactions(&db, &mut work, 200).await };
    let reshard = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (port, from, to) = (cluster.port, from.clone(), to.clone());
        tokio::task::spawn_blocking(move || common::cluster::reshard(port, &from, &to, 1000))
            .await
            .unwrap()
    };
    let ((), out) = tokio::join!(writes, reshard);
    assert!(
        out.status.success(),
        "reshard: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let moved = cluster.nodes().into_iter().find(|n| n.id == to.id).unwrap();
    let count = |n: &NodeInfo| -> u32 { n.slots.iter().map(|&(a, b)| u32::from(b - a) + 1).sum() };
    assert_eq!(count(&moved), count(&to) + 1000, "{moved:?}");
    transactions(&db, &mut work, 50).await;
    stop_catch_up_and_verify(&db, child, &log).await;
}

/// A cluster with a master and its replica both gone is down: a start is
/// refused with one line, not a wall of `CLUSTERDOWN`.
#[tokio::test]
async fn a_cluster_that_is_down_is_one_error_line() {
    let cluster = PrivateCluster::start();
    let db = TestDb::on(cluster.servers(None), "cluster_down").await;
    let victim = cluster.nodes().into_iter().find(|n| n.master).unwrap();
    let replica = cluster.replicas_of(&victim)[0].clone();
    cluster.kill(replica.port);
    cluster.kill(victim.port);
    let url = format!(
        "redis://127.0.0.1:{}",
        cluster
            .ports()
            .iter()
            .find(|&&p| p != victim.port && p != replica.port)
            .unwrap()
    );
    let mut down = false;
    for _ in 0..100 {
        let out = db.run_with(&["snapshot"], &[("REDIS_URL", &url)]).await;
        let err = common::stderr(&out);
        assert!(!out.status.success(), "{err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(err.len() < 2_000 && !err.contains("panicked"), "{err}");
        if lines[0].contains("is down (cluster_state:fail)") {
            down = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(down, "the cluster was never reported down");
}

/// An ACL user limited to the namespace, set on every node, is all the
/// replicator needs on a cluster too (`CLUSTER SLOTS`, `CLUSTER INFO` and
/// `WAIT` are not `@dangerous`).
#[tokio::test]
async fn an_acl_user_limited_to_the_namespace_is_enough_on_a_cluster() {
    let cluster = PrivateCluster::start();
    let db = TestDb::on(cluster.servers(None), "cluster_acl").await;
    for port in cluster.ports() {
        let pattern = format!("~{}*", db.prefix);
        let out = cluster.cli(
            port,
            &[
                "acl",
                "setuser",
                "repl",
                "on",
                ">acl-pw",
                &pattern,
                "+@all",
                "-@dangerous",
            ],
        );
        assert_eq!(out.trim(), "OK", "node {port}: {out}");
    }
    let url = format!("redis://repl:acl-pw@127.0.0.1:{}", cluster.port);
    let mut work = Workload::new(36);
    db.sql(&work.initial()).await;
    let env = [("REDIS_URL", url.as_str())];
    db.run_ok_with(&["snapshot"], &env).await;
    transactions(&db, &mut work, 30).await;
    let wait = ["run", "--exit-when-caught-up", "--redis-wait-replicas", "1"];
    db.run_ok_with(&wait, &env).await;
    db.run_ok_with(&["verify"], &env).await;
}
