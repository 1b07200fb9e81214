//! The seam between the stream and Redis: [`GroupSink`], and its Redis
//! implementation.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::model::{Bytes, Command, Keys, Timestamp};
use crate::sink::{CheckedBatch, RedisSink, Scope};
use crate::snapshot::{self, Pace};
use crate::state::{Checkpoint, StateStore};

/// What Redis said of the namespace when it applied a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Namespace {
    /// The namespace's marker key was there: Redis holds the model.
    Intact,
    /// The marker key was missing (on a cluster: for these slots): Redis
    /// lost that part of the namespace (a restart without persistence, a
    /// flush), and holds there only what came since.
    Lost(Scope),
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
///   and never without its TTL (and, with `--redis-wait-replicas`, when
///   the replicas have it); only then does the stream commit the group's
///   checkpoint. The answer also says whether the namespace was still
///   there ([`Namespace`]), seen from inside the same writes.
/// - **An error means "not known to be applied".** The group may be applied
///   in part or not at all, and nothing is committed past it. A transient
///   error ([`crate::Error::is_transient`]: Redis unreachable, loading,
///   full, failing over or resharding) is retried by the stream with
///   backoff, with the same group; any other stops the stream.
/// - **A lost namespace is rebuilt before anything more is written**: the
///   stream commits the group, then calls [`GroupSink::rebuild`] with what
///   was lost.
pub trait GroupSink: Clone + Send + Sync + 'static {
    /// A group's commands, ready to send: encoded while the group before is
    /// still being written, so that Redis waits for as little as possible.
    type Encoded: Send + Sync + 'static;

    fn encode(&self, commands: &[Command]) -> Self::Encoded;

    /// Writes one group, with the namespace's marker checked in the same
    /// transactions. One attempt: the caller retries transient errors.
    fn write(&self, group: &Self::Encoded) -> impl Future<Output = Result<Namespace>> + Send;

    /// Whether the namespace is there, filled from the snapshot `id`:
    /// checked once when the stream starts.
    fn namespace(&self, id: &str) -> impl Future<Output = Result<Namespace>>;

    /// Whether the sink wants a group written even when it has nothing to
    /// write, to check the whole namespace (see [`RedisGroups`]).
    fn check_due(&self) -> bool {
        false
    }

    /// Writes the `lost` part of the namespace again from the state alone
    /// (committed up to `checkpoint`), removes what the state no longer
    /// gives there, and sets its marker to the checkpoint's snapshot id.
    /// (Awaited by the stream's loop itself, so its future need not be
    /// `Send`.)
    fn rebuild(&self, checkpoint: &Checkpoint, lost: &Scope) -> impl Future<Output = Result<()>>;
}

/// How often, on a cluster, every slot's marker is checked, on top of the
/// slots each group writes: a master that restarted empty shows even in
/// slots the stream has not written since.
const FULL_CHECK_EVERY: Duration = Duration::from_secs(10);

/// The stream's groups written to Redis: on one server, each group as one
/// `MULTI`/`EXEC` that ends with `EXISTS marker`; on a cluster, one such
/// transaction per hash slot, with that slot's marker.
#[derive(Clone)]
pub struct RedisGroups {
    sink: RedisSink,
    keys: Keys,
    /// The state a lost namespace is rebuilt from, and how fast.
    state: StateStore,
    pace: Pace,
    shutdown: CancellationToken,
    /// On a cluster: when every slot's marker was last checked.
    checked: Arc<Mutex<Instant>>,
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
            checked: Arc::new(Mutex::new(Instant::now())),
        }
    }

    /// On a cluster, once every [`FULL_CHECK_EVERY`], or at once when
    /// `forced`: the slots whose marker is missing.
    async fn full_check(&self, forced: bool) -> Result<Option<Scope>> {
        if !(self.check_due() || forced && self.sink.is_cluster()) {
            return Ok(None);
        }
        let markers = self.sink.read_markers(&self.keys.marker()).await?;
        *self.checked.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        let missing = missing_slots(&markers);
        Ok((!missing.is_empty()).then(|| Scope::of_slots(missing)))
    }
}

/// The slots whose marker key is missing.
fn missing_slots(markers: &[(u16, Option<Bytes>)]) -> Vec<u16> {
    markers
        .iter()
        .filter(|(_, value)| value.is_none())
        .map(|(s, _)| *s)
        .collect()
}

impl GroupSink for RedisGroups {
    type Encoded = CheckedBatch;

    fn encode(&self, commands: &[Command]) -> CheckedBatch {
        self.sink.encode_checked(commands, &self.keys.marker())
    }

    async fn write(&self, group: &CheckedBatch) -> Result<Namespace> {
        let lost = self.sink.exec_checked(group).await?;
        // A slot found lost is most likely one of a master's: the others
        // are found now, so that they are rebuilt in one go.
        let found = self.full_check(lost.is_some()).await?;
        let lost = match (lost, found) {
            (None, None) => None,
            (Some(a), Some(b)) => Some(a.union(b)),
            (a, b) => a.or(b),
        };
        self.sink.wait_for_replicas().await?;
        Ok(lost.map_or(Namespace::Intact, Namespace::Lost))
    }

    async fn namespace(&self, id: &str) -> Result<Namespace> {
        let markers = self.sink.read_markers(&self.keys.marker()).await?;
        let foreign = markers
            .iter()
            .any(|(_, v)| v.as_deref().is_some_and(|v| v != id.as_bytes()));
        let missing = missing_slots(&markers);
        Ok(if foreign || missing.len() == markers.len() {
            Namespace::Lost(Scope::All)
        } else if missing.is_empty() {
            Namespace::Intact
        } else {
            Namespace::Lost(Scope::of_slots(missing))
        })
    }

    fn check_due(&self) -> bool {
        self.sink.is_cluster()
            && self
                .checked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .elapsed()
                >= FULL_CHECK_EVERY
    }

    async fn rebuild(&self, checkpoint: &Checkpoint, lost: &Scope) -> Result<()> {
        let slots = lost.count();
        match lost {
            Scope::All => tracing::warn!(
                "the namespace's marker key is missing in Redis (a restart without persistence, \
                 or a flush): rebuilding the namespace from the replicator's state"
            ),
            Scope::Slots(_) => tracing::warn!(
                slots,
                "the namespace's marker is missing in some hash slots (a cluster master that \
                 restarted empty, or a flush): rebuilding the sessions and indexes of those \
                 slots from the replicator's state"
            ),
        }
        let _running = crate::telemetry::SnapshotRunning::start();
        let (state, sink, keys) = (&self.state, &self.sink, &self.keys);
        let now = Timestamp::now();
        let pace = &self.pace;
        let stale = snapshot::remove_stale(state, sink, keys, now, pace, lost).await?;
        let written =
            snapshot::materialize(state, sink, keys, now, pace, lost, &self.shutdown).await?;
        // The markers say that the slots hold everything: with
        // --redis-wait-replicas, only once the replicas have it too.
        sink.wait_for_replicas().await?;
        sink.set_markers(&keys.marker(), &checkpoint.snapshot.id, lost)
            .await?;
        match lost {
            Scope::All => tracing::info!(
                sessions = written.sessions,
                stale,
                "namespace rebuilt from the state at {}",
                checkpoint.position
            ),
            Scope::Slots(_) => tracing::info!(
                sessions = written.sessions,
                slots,
                stale,
                "rebuilt {} sessions in {} lost hash slots from the state at {}",
                written.sessions,
                slots,
                checkpoint.position
            ),
        }
        Ok(())
    }
}
