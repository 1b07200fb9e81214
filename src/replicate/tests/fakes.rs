//! A fake sink and a fake store that log what they are asked to do, in
//! order, and pieces to feed the pipeline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::super::read::Budgeted;
use super::super::sink::{GroupSink, Namespace};
use super::super::store::GroupStore;
use crate::error::{Error, Result};
use crate::model::{Command, Content, Pending, RowChange, SourceRow, User};
use crate::position::BinlogPosition;
use crate::sink::Scope;
use crate::source::Piece;
use crate::state::{Checkpoint, SnapshotInfo, STATE_FORMAT};
use crate::testing::MemState;

/// What the fakes were asked to do. Groups are numbered from 1 in the
/// order the pipeline encoded them; commits and rebuilds name the offset of
/// their checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Event {
    Write(u64),
    Acked(u64),
    Commit(u64),
    Rebuild(u64),
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Answer {
    Intact,
    Lost,
    /// Redis unreachable: the writer retries.
    Transient,
    /// An error that stops the stream.
    Fatal,
}

#[derive(Default)]
pub(super) struct Log(Mutex<Vec<Event>>);

impl Log {
    pub(super) fn push(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }

    pub(super) fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    pub(super) fn has(&self, event: &Event) -> bool {
        self.events().contains(event)
    }

    /// Where `event` is in the log; fails the test when it is not.
    pub(super) fn index(&self, event: &Event) -> usize {
        let events = self.events();
        let found = events.iter().position(|e| e == event);
        found.unwrap_or_else(|| panic!("{event:?} not in {events:?}"))
    }

    /// Waits (with a timeout) until `event` is logged.
    pub(super) async fn until(&self, event: Event) {
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
pub(super) struct FakeSink {
    log: Arc<Log>,
    encoded: Arc<Mutex<u64>>,
    /// Answers by group number; `Intact` where none is set.
    answers: Arc<Mutex<HashMap<u64, Answer>>>,
    /// When set, each write waits for one permit before it answers.
    gate: Option<Arc<Semaphore>>,
}

impl FakeSink {
    pub(super) fn new(log: &Arc<Log>) -> Self {
        FakeSink {
            log: log.clone(),
            encoded: Arc::default(),
            answers: Arc::default(),
            gate: None,
        }
    }

    pub(super) fn gated(log: &Arc<Log>) -> Self {
        FakeSink {
            gate: Some(Arc::new(Semaphore::new(0))),
            ..FakeSink::new(log)
        }
    }

    pub(super) fn answer(self, group: u64, answer: Answer) -> Self {
        self.answers.lock().unwrap().insert(group, answer);
        self
    }

    /// Waits (with a timeout) until `n` groups were encoded.
    pub(super) async fn until_encoded(&self, n: u64) {
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            while *self.encoded.lock().unwrap() < n {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        waited.await.expect("the groups are encoded");
    }

    /// Lets `n` more writes answer.
    pub(super) fn release(&self, n: usize) {
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
            Some(Answer::Lost) => Namespace::Lost(Scope::All),
            _ => Namespace::Intact,
        })
    }

    async fn namespace(&self, _id: &str) -> Result<Namespace> {
        Ok(Namespace::Intact)
    }

    async fn rebuild(&self, checkpoint: &Checkpoint, _lost: &Scope) -> Result<()> {
        self.log.push(Event::Rebuild(checkpoint.position.offset));
        Ok(())
    }
}

pub(super) struct FakeStore {
    pub(super) log: Arc<Log>,
    pub(super) state: Mutex<MemState>,
    pub(super) checkpoint: Mutex<Option<Checkpoint>>,
    /// A commit of a checkpoint at this offset fails, once that event is
    /// logged.
    pub(super) fail_at: Option<(u64, Event)>,
}

impl FakeStore {
    pub(super) fn new(log: &Arc<Log>) -> Self {
        FakeStore {
            log: log.clone(),
            state: Mutex::default(),
            checkpoint: Mutex::default(),
            fail_at: None,
        }
    }

    pub(super) fn committed(&self) -> Option<u64> {
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

pub(super) fn at(offset: u64) -> BinlogPosition {
    BinlogPosition::parse("binlog.000001", offset).unwrap()
}

pub(super) fn start() -> Checkpoint {
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
pub(super) fn piece(id: u64) -> Result<Budgeted> {
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
