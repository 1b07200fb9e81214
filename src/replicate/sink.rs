//! The seam between the stream and Redis: [`GroupSink`], and its Redis
//! implementation.

use std::future::Future;

use redis::Pipeline;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::model::{Bytes, Command, Keys, Timestamp};
use crate::sink::{checked_transaction, RedisSink};
use crate::snapshot::{self, Pace};
use crate::state::{Checkpoint, StateStore};

/// What Redis said of the namespace when it applied a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Namespace {
    /// The namespace's marker key was there: Redis holds the model.
    Intact,
    /// The marker key was missing: Redis lost the namespace (a restart
    /// without persistence, a flush), and holds only what came since.
    Lost,
}

/// Where the stream writes its groups of transactions.
///
/// The contract, which the stream's ordering rests on:
///
/// - **At least once.** A group may be written more than once: after a
///   crash the stream replays from the last checkpoint, and a group whose
///   acknowledgment was lost is written again. Every command sets a value
///   taken from the state (whole hashes, fields, `DEL`, `EXPIREAT`, index
///   members), so a group written twice leaves the same Redis.
/// - **In order, one at a time.** The stream hands over a group only after
///   the one before was acknowledged. An implementation writes a group
///   whole before it answers, and keeps no write of its own for later.
/// - **Acknowledged means applied.** [`GroupSink::write`] answers `Ok` only
///   when Redis applied every command of the group, each key atomically
///   and never without its TTL; only then does the stream commit the
///   group's checkpoint. The answer also says whether the namespace was
///   still there ([`Namespace`]), seen from inside the same writes.
/// - **An error means "not known to be applied".** The group may be applied
///   in part or not at all, and nothing is committed past it. A transient
///   error ([`crate::Error::is_transient`]: Redis unreachable, loading, or
///   full) is retried by the stream with backoff, with the same group; any
///   other stops the stream.
/// - **A lost namespace is rebuilt before anything more is written**: the
///   stream commits the group, then calls [`GroupSink::rebuild`].
pub trait GroupSink: Clone + Send + Sync + 'static {
    /// A group's commands, ready to send: encoded while the group before is
    /// still being written, so that Redis waits for as little as possible.
    type Encoded: Send + Sync + 'static;

    fn encode(&self, commands: &[Command]) -> Self::Encoded;

    /// Writes one group, with the namespace's marker checked in the same
    /// transaction. One attempt: the caller retries transient errors.
    fn write(&self, group: &Self::Encoded) -> impl Future<Output = Result<Namespace>> + Send;

    /// The namespace marker's value (the id of the snapshot Redis was
    /// filled from), checked once when the stream starts.
    fn marker(&self) -> impl Future<Output = Result<Option<Bytes>>>;

    /// Writes the whole namespace again from the state alone (committed up
    /// to `checkpoint`), removes what the state no longer gives, and sets
    /// the marker to the checkpoint's snapshot id.
    /// (Awaited by the stream's loop itself, so its future need not be
    /// `Send`.)
    fn rebuild(&self, checkpoint: &Checkpoint) -> impl Future<Output = Result<()>>;
}

/// The stream's groups written to one Redis server, each as one
/// `MULTI`/`EXEC` that ends with `EXISTS marker`.
#[derive(Clone)]
pub struct RedisGroups {
    sink: RedisSink,
    keys: Keys,
    /// The state a lost namespace is rebuilt from, and how fast.
    state: StateStore,
    pace: Pace,
    shutdown: CancellationToken,
}

impl RedisGroups {
    pub fn new(
        sink: RedisSink,
        keys: Keys,
        state: StateStore,
        pace: Pace,
        shutdown: CancellationToken,
    ) -> Self {
        RedisGroups {
            sink,
            keys,
            state,
            pace,
            shutdown,
        }
    }
}

impl GroupSink for RedisGroups {
    type Encoded = Pipeline;

    fn encode(&self, commands: &[Command]) -> Pipeline {
        checked_transaction(commands, &self.keys.marker())
    }

    async fn write(&self, group: &Pipeline) -> Result<Namespace> {
        Ok(match self.sink.exec_checked(group).await? {
            true => Namespace::Intact,
            false => Namespace::Lost,
        })
    }

    async fn marker(&self) -> Result<Option<Bytes>> {
        self.sink.get(&self.keys.marker()).await
    }

    async fn rebuild(&self, checkpoint: &Checkpoint) -> Result<()> {
        tracing::warn!(
            "the namespace's marker key is missing in Redis (a restart without persistence, or \
             a flush): rebuilding the namespace from the replicator's state"
        );
        let _running = crate::telemetry::SnapshotRunning::start();
        let (state, sink, keys) = (&self.state, &self.sink, &self.keys);
        let now = Timestamp::now();
        let pace = &self.pace;
        let stale = snapshot::remove_stale(state, sink, keys, now, pace).await?;
        let written = snapshot::materialize(state, sink, keys, now, pace, &self.shutdown).await?;
        let marker = Command::Set {
            key: keys.marker(),
            value: checkpoint.snapshot.id.as_bytes().to_vec(),
        };
        sink.write(&[marker], false).await?;
        tracing::info!(
            sessions = written.sessions,
            stale,
            "namespace rebuilt from the state at {}",
            checkpoint.position
        );
        Ok(())
    }
}
