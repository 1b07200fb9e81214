//! The pipeline's ordering rules, against a fake sink and a fake store
//! that log what they are asked to do, in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::group::Limits;
use super::pipeline::Pipeline;
use super::read::Budgeted;
use super::retry::Outage;
use super::sink::{GroupSink, Namespace};
use super::store::GroupStore;
use crate::error::{Error, Result};
use crate::model::{Bytes, Command, Content, Keys, Pending, RowChange, SourceRow, User};
use crate::position::BinlogPosition;
use crate::source::Piece;
use crate::state::{Checkpoint, SnapshotInfo, STATE_FORMAT};
use crate::telemetry::Health;
use crate::testing::MemState;

/// What the fakes were asked to do. Groups are numbered from 1 in the
/// order the pipeline encoded them; commits and rebuilds name the offset of
/// their checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Event {
    Write(u64),
    Acked(u64),
    Commit(u64),
    Rebuild(u64),
}

#[derive(Clone, Copy, Debug)]
enum Answer {
    Intact,
    Lost,
    /// Redis unreachable: the writer retries.
    Transient,
    /// An error that stops the stream.
    Fatal,
}

#[derive(Default)]
struct Log(Mutex<Vec<Event>>);

impl Log {
    fn push(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }

    fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    fn has(&self, event: &Event) -> bool {
        self.events().contains(event)
    }

    /// Where `event` is in the log; fails the test when it is not.
    fn index(&self, event: &Event) -> usize {
        let events = self.events();
        let found = events.iter().position(|e| e == event);
        found.unwrap_or_else(|| panic!("{event:?} not in {events:?}"))
    }

    /// Waits (with a timeout) until `event` is logged.
    async fn until(&self, event: Event) {
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            while !self.has(&event) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        waited
            .await
            .unwrap_or_else(|_| panic!("{event:?} never came: {:?}", self.events()));
    }
}

#[derive(Clone)]
struct FakeSink {
    log: Arc<Log>,
    encoded: Arc<Mutex<u64>>,
    /// Answers by group number; `Intact` where none is set.
    answers: Arc<Mutex<HashMap<u64, Answer>>>,
    /// When set, each write waits for one permit before it answers.
    gate: Option<Arc<Semaphore>>,
}

impl FakeSink {
    fn new(log: &Arc<Log>) -> Self {
        FakeSink {
            log: log.clone(),
            encoded: Arc::default(),
            answers: Arc::default(),
            gate: None,
        }
    }

    fn gated(log: &Arc<Log>) -> Self {
        FakeSink {
            gate: Some(Arc::new(Semaphore::new(0))),
            ..FakeSink::new(log)
        }
    }

    fn answer(self, group: u64, answer: Answer) -> Self {
        self.answers.lock().unwrap().insert(group, answer);
        self
    }

    /// Waits (with a timeout) until `n` groups were encoded.
    async fn until_encoded(&self, n: u64) {
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            while *self.encoded.lock().unwrap() < n {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        waited.await.expect("the groups are encoded");
    }

    /// Lets `n` more writes answer.
    fn release(&self, n: usize) {
        self.gate.as_ref().expect("a gated sink").add_permits(n);
    }
}

impl GroupSink for FakeSink {
    type Encoded = u64;

    fn encode(&self, _: &[Command]) -> u64 {
        let mut n = self.encoded.lock().unwrap();
        *n += 1;
        *n
    }

    async fn write(&self, &group: &u64) -> Result<Namespace> {
        self.log.push(Event::Write(group));
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("the gate stays open").forget();
        }
        let answer = self.answers.lock().unwrap().get(&group).copied();
        match answer.unwrap_or(Answer::Intact) {
            Answer::Transient => {
                let unreachable = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
                return Err(Error::redis("writing a group", unreachable.into()));
            }
            Answer::Fatal => {
                let refused = (redis::ErrorKind::UnexpectedReturnType, "refused");
                return Err(Error::redis("writing a group", refused.into()));
            }
            Answer::Intact | Answer::Lost => {}
        }
        self.log.push(Event::Acked(group));
        Ok(match answer {
            Some(Answer::Lost) => Namespace::Lost,
            _ => Namespace::Intact,
        })
    }

    async fn marker(&self) -> Result<Option<Bytes>> {
        Ok(Some(b"snap".to_vec()))
    }

    async fn rebuild(&self, checkpoint: &Checkpoint) -> Result<()> {
        self.log.push(Event::Rebuild(checkpoint.position.offset));
        Ok(())
    }
}

struct FakeStore {
    log: Arc<Log>,
    state: Mutex<MemState>,
    checkpoint: Mutex<Option<Checkpoint>>,
    /// A commit of a checkpoint at this offset fails, once that event is
    /// logged.
    fail_at: Option<(u64, Event)>,
}

impl FakeStore {
    fn new(log: &Arc<Log>) -> Self {
        FakeStore {
            log: log.clone(),
            state: Mutex::default(),
            checkpoint: Mutex::default(),
            fail_at: None,
        }
    }

    fn committed(&self) -> Option<u64> {
        self.checkpoint
            .lock()
            .unwrap()
            .as_ref()
            .map(|c| c.position.offset)
    }
}

impl GroupStore for FakeStore {
    type View<'a> = MemState;
    type Batch = Pending;

    fn view(&self) -> MemState {
        self.state.lock().unwrap().clone()
    }

    fn encode(pending: &Pending) -> Pending {
        pending.clone()
    }

    fn commit(&self, batch: Pending, checkpoint: &Checkpoint) -> Result<()> {
        let offset = checkpoint.position.offset;
        if let Some((_, after)) = self.fail_at.as_ref().filter(|(at, _)| *at == offset) {
            // The commit runs on the loop's thread, the write on another.
            let until = std::time::Instant::now() + Duration::from_secs(10);
            while !self.log.has(after) && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(1));
            }
            return Err(Error::State {
                path: "fake".into(),
                message: "the disk is full".into(),
            });
        }
        self.state.lock().unwrap().commit(&batch);
        *self.checkpoint.lock().unwrap() = Some(checkpoint.clone());
        self.log.push(Event::Commit(offset));
        Ok(())
    }
}

fn at(offset: u64) -> BinlogPosition {
    BinlogPosition::parse("binlog.000001", offset).unwrap()
}

fn start() -> Checkpoint {
    Checkpoint {
        format: STATE_FORMAT,
        position: at(4),
        skip_rows: 0,
        snapshot: SnapshotInfo {
            id: "snap".into(),
            taken_at: 0,
            database: "db".into(),
            position: at(4),
        },
        committed_at: 0,
    }
}

/// A transaction inserting user `id`, ending at offset `100 * id`.
fn piece(id: u64) -> Result<Budgeted> {
    let user = User {
        user_id: id as i64,
        username: format!("user{id}").into_bytes(),
        email: format!("user{id}@example.com").into_bytes(),
    };
    let rows = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
    Ok(Budgeted {
        piece: Piece {
            content: Content::Rows(vec![RowChange::Insert(SourceRow::User(user))]),
            position: at(100 * id),
            skip_rows: 0,
            timestamp: 1,
            ends_transaction: true,
            heartbeat: false,
        },
        rows,
    })
}

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
