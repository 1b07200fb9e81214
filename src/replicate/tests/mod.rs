//! The pipeline's ordering rules, against a fake sink and a fake store
//! that log what they are asked to do, in order.

mod fakes;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::group::Limits;
use super::pipeline::Pipeline;
use super::read::Budgeted;
use super::retry::Outage;
use super::store::GroupStore;
use crate::error::{Error, Result};
use crate::model::Keys;
use crate::position::BinlogPosition;
use crate::telemetry::Health;

use fakes::{at, piece, start, Answer, Event, FakeSink, FakeStore, Log};

/// A pipeline over the fakes, each piece a group of its own.
struct Bench {
    keys: Keys,
    health: Arc<Health>,
    shutdown: CancellationToken,
    target: Option<BinlogPosition>,
}

impl Bench {
    fn new() -> Self {
        Bench {
            keys: Keys::new("t:"),
            health: Arc::new(Health::new(Duration::from_secs(5))),
            shutdown: CancellationToken::new(),
            target: None,
        }
    }

    fn pipeline<'a>(
        &'a self,
        sink: &FakeSink,
        store: &'a FakeStore,
    ) -> Pipeline<'a, FakeSink, FakeStore> {
        let limits = Limits {
            rows: 1,
            delay: Duration::from_millis(1),
        };
        Pipeline::new(
            sink.clone(),
            store,
            &self.keys,
            limits,
            start(),
            self.target.clone(),
            self.health.clone(),
            self.shutdown.clone(),
        )
    }
}

/// Runs the pipeline over `rx` beside `drive`; the pipeline's result.
async fn run_beside(
    mut pipeline: Pipeline<'_, FakeSink, FakeStore>,
    mut rx: mpsc::Receiver<Result<Budgeted>>,
    drive: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let mut outage = Outage::new("the fake source");
    let both = async { tokio::join!(pipeline.run(&mut rx, &mut outage), drive) };
    let (result, ()) = tokio::time::timeout(Duration::from_secs(30), both)
        .await
        .expect("the pipeline ends");
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_is_committed_only_after_the_sink_acknowledged_it() {
    let log = Arc::new(Log::default());
    let (sink, store, bench) = (FakeSink::gated(&log), FakeStore::new(&log), Bench::new());
    let (tx, rx) = mpsc::channel(8);
    let drive = async {
        tx.send(piece(1)).await.unwrap();
        log.until(Event::Write(1)).await;
        // The next group arrives while the first is unacknowledged: it is
        // built, and must wait for the acknowledgment, as must the commit.
        tx.send(piece(2)).await.unwrap();
        sink.until_encoded(2).await;
        assert!(!log.has(&Event::Commit(100)), "{:?}", log.events());
        assert!(!log.has(&Event::Write(2)), "{:?}", log.events());
        sink.release(1);
        log.until(Event::Commit(100)).await;
        sink.release(1);
        log.until(Event::Commit(200)).await;
        bench.shutdown.cancel();
    };
    run_beside(bench.pipeline(&sink, &store), rx, drive)
        .await
        .unwrap();
    assert!(log.index(&Event::Acked(1)) < log.index(&Event::Commit(100)));
    assert!(log.index(&Event::Acked(2)) < log.index(&Event::Commit(200)));
    assert_eq!(store.committed(), Some(200));
    assert_eq!(store.view().users.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_written_after_a_failed_commit_is_never_committed() {
    let log = Arc::new(Log::default());
    let sink = FakeSink::gated(&log);
    let store = FakeStore {
        fail_at: Some((100, Event::Acked(2))),
        ..FakeStore::new(&log)
    };
    let bench = Bench::new();
    let (tx, rx) = mpsc::channel(8);
    let drive = async {
        tx.send(piece(1)).await.unwrap();
        log.until(Event::Write(1)).await;
        tx.send(piece(2)).await.unwrap();
        sink.until_encoded(2).await;
        // Group 2 is written while group 1 is committed; that commit fails.
        sink.release(2);
    };
    let err = run_beside(bench.pipeline(&sink, &store), rx, drive).await;
    assert!(matches!(err, Err(Error::State { .. })), "{err:?}");
    // Group 2 was acknowledged by then, and still not committed.
    assert!(log.has(&Event::Acked(2)), "{:?}", log.events());
    assert!(!log.has(&Event::Commit(200)), "{:?}", log.events());
    assert_eq!(store.committed(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failed_write_nothing_more_is_written_or_committed() {
    let log = Arc::new(Log::default());
    let sink = FakeSink::gated(&log).answer(1, Answer::Fatal);
    let (store, bench) = (FakeStore::new(&log), Bench::new());
    let (tx, rx) = mpsc::channel(8);
    let drive = async {
        tx.send(piece(1)).await.unwrap();
        log.until(Event::Write(1)).await;
        tx.send(piece(2)).await.unwrap();
        tx.send(piece(3)).await.unwrap();
        sink.release(3);
    };
    let err = run_beside(bench.pipeline(&sink, &store), rx, drive).await;
    assert!(matches!(err, Err(Error::Redis { .. })), "{err:?}");
    assert_eq!(log.events(), [Event::Write(1)]);
    assert_eq!(store.committed(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_ends_at_the_target_before_writing_past_it() {
    let log = Arc::new(Log::default());
    let (sink, store) = (FakeSink::gated(&log), FakeStore::new(&log));
    let bench = Bench {
        target: Some(at(200)),
        ..Bench::new()
    };
    let (tx, rx) = mpsc::channel(8);
    for id in 1..=4 {
        tx.send(piece(id)).await.unwrap();
    }
    let drive = async {
        sink.release(1);
        log.until(Event::Write(2)).await;
        // Group 3 is built while group 2, the one that reaches the target,
        // is in flight; only then does group 2 answer.
        sink.until_encoded(3).await;
        sink.release(8);
    };
    run_beside(bench.pipeline(&sink, &store), rx, drive)
        .await
        .unwrap();
    assert_eq!(store.committed(), Some(200));
    let events = log.events();
    assert!(!events.contains(&Event::Write(3)), "{events:?}");
    assert!(!events.contains(&Event::Commit(300)), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_namespace_is_rebuilt_before_the_next_write() {
    let log = Arc::new(Log::default());
    let sink = FakeSink::gated(&log).answer(1, Answer::Lost);
    let (store, bench) = (FakeStore::new(&log), Bench::new());
    let (tx, rx) = mpsc::channel(8);
    for id in 1..=3 {
        tx.send(piece(id)).await.unwrap();
    }
    let drive = async {
        // Group 2 is built while group 1 is in flight; then group 1 answers.
        sink.until_encoded(2).await;
        sink.release(8);
        log.until(Event::Commit(300)).await;
        bench.shutdown.cancel();
    };
    run_beside(bench.pipeline(&sink, &store), rx, drive)
        .await
        .unwrap();
    // The state the rebuild reads holds group 1; nothing after it was
    // written before the rebuild.
    assert!(log.index(&Event::Commit(100)) < log.index(&Event::Rebuild(100)));
    assert!(log.index(&Event::Rebuild(100)) < log.index(&Event::Write(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_group_in_flight() {
    let log = Arc::new(Log::default());
    let (sink, store, bench) = (FakeSink::gated(&log), FakeStore::new(&log), Bench::new());
    let (tx, rx) = mpsc::channel(8);
    let drive = async {
        tx.send(piece(1)).await.unwrap();
        log.until(Event::Write(1)).await;
        bench.shutdown.cancel();
        // The answer comes after the loop saw the shutdown. (However long
        // this wait, the rule holds; the wait only gives a loop that broke
        // it the time to show it.)
        tokio::time::sleep(Duration::from_millis(20)).await;
        sink.release(1);
    };
    run_beside(bench.pipeline(&sink, &store), rx, drive)
        .await
        .unwrap();
    assert_eq!(
        log.events(),
        [Event::Write(1), Event::Acked(1), Event::Commit(100)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_redis_is_unreachable_commits_nothing() {
    let log = Arc::new(Log::default());
    let sink = FakeSink::new(&log).answer(1, Answer::Transient);
    let (store, bench) = (FakeStore::new(&log), Bench::new());
    let (tx, rx) = mpsc::channel(8);
    let drive = async {
        tx.send(piece(1)).await.unwrap();
        log.until(Event::Write(1)).await;
        bench.shutdown.cancel();
    };
    run_beside(bench.pipeline(&sink, &store), rx, drive)
        .await
        .unwrap();
    assert_eq!(store.committed(), None);
    assert!(!bench.health.is_healthy(), "Redis is reported down");
}
