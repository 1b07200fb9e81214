//! The replicator's state in RocksDB: its own copy of the four tables, keyed
//! for the join, and the checkpoint that says which binlog position that copy
//! describes.
//!
//! State and checkpoint change together in one `WriteBatch`, so the position
//! always describes the state. The snapshot clears the checkpoint before it
//! loads anything, so an interrupted snapshot leaves nothing that `run` could
//! take for a complete one.

mod batch;
mod checkpoint;
mod keys;
mod reader;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, Options, ReadOptions,
    WriteBatch, WriteOptions, DB, DEFAULT_COLUMN_FAMILY_NAME,
};
use serde::de::DeserializeOwned;

pub use batch::StateBatch;
pub use checkpoint::{Checkpoint, SnapshotInfo, STATE_FORMAT};
pub use reader::StateReader;

use crate::error::{Error, Result};
use crate::model::{Preferences, RowChange, Session, SessionRef, SourceRow, Table, User, Xid};

/// Files in level 0 that start a compaction into level 1. Keys arrive in no
/// useful order (a snapshot's attributes, streaming's updates all over the
/// state), so each such compaction rewrites most of level 1: in runs of 8
/// files rather than RocksDB's default of 4, the state is rewritten half as
/// often, for reads that look at a few more files (docs/performance.md
/// has what it saved).
const L0_COMPACTION: i32 = 8;
/// Files in level 0 at which writes slow down, and stop until compaction
/// catches up: well above the trigger, so that loading never waits.
const L0_SLOWDOWN: i32 = 24;
const L0_STOP: i32 = 40;

/// Keys read in one batched read.
const MULTI_GET_BATCH: usize = 1024;

/// A handle on the state directory. Cheap to clone.
#[derive(Clone)]
pub struct StateStore {
    db: Arc<DB>,
    path: PathBuf,
}

impl StateStore {
    /// Opens (creating if needed, with owner-only permissions) the state in `path`.
    pub fn open(path: &Path) -> Result<Self> {
        create_private_dir(path)?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_max_open_files(256);
        opts.set_keep_log_file_num(3);
        // Memory stays bounded whatever the table sizes: at most three 16 MiB
        // memtables and a 32 MiB block cache.
        opts.set_write_buffer_size(16 << 20);
        opts.set_max_write_buffer_number(3);
        // Compaction shares the machine with the replicator, MySQL and
        // Redis: uncompressed files cost disk, not CPU.
        opts.set_compression_type(rocksdb::DBCompressionType::None);
        opts.set_level_zero_file_num_compaction_trigger(L0_COMPACTION);
        opts.set_level_zero_slowdown_writes_trigger(L0_SLOWDOWN);
        opts.set_level_zero_stop_writes_trigger(L0_STOP);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&Cache::new_lru_cache(32 << 20));
        table.set_bloom_filter(10.0, false);
        opts.set_block_based_table_factory(&table);
        // Opened by its one column family, so that the handle batched reads
        // take exists (the rows all live in the default family).
        let family = ColumnFamilyDescriptor::new(DEFAULT_COLUMN_FAMILY_NAME, opts.clone());
        let db = DB::open_cf_descriptors(&opts, path, [family]).map_err(|e| Error::State {
            path: path.to_owned(),
            message: format!(
                "cannot open RocksDB: {e}. Is another replicator using this STATE_DIR?"
            ),
        })?;
        Ok(StateStore {
            db: Arc::new(db),
            path: path.to_owned(),
        })
    }

    /// Opens an existing state for reading, even while a replicator holds it.
    pub fn open_read_only(path: &Path) -> Result<Self> {
        let db = DB::open_cf_for_read_only(
            &Options::default(),
            path,
            [DEFAULT_COLUMN_FAMILY_NAME],
            false,
        )
        .map_err(|e| Error::State {
            path: path.to_owned(),
            message: format!(
                "cannot open RocksDB: {e}. Is STATE_DIR the replicator's state directory?"
            ),
        })?;
        Ok(StateStore {
            db: Arc::new(db),
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::State {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// The last committed checkpoint, if a complete snapshot was ever taken.
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>> {
        let Some(raw) = self.db.get(keys::CHECKPOINT).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        let checkpoint: Checkpoint = serde_json::from_slice(&raw)
            .map_err(|e| self.err(format!("checkpoint is unreadable: {e}")))?;
        if checkpoint.format != STATE_FORMAT {
            tracing::warn!(
                "the state in {} was written in format {} (this replicator reads {STATE_FORMAT}): \
                 it is set aside and a fresh snapshot is taken",
                self.path.display(),
                checkpoint.format
            );
            return Ok(None);
        }
        Ok(Some(checkpoint))
    }

    /// Removes the checkpoint and every row: the start of a snapshot. The
    /// row changes of prepared XA transactions stay: a snapshot cannot see
    /// them, and the server may still commit them (the snapshot then drops
    /// those the server no longer lists, [`Self::release_held_xa`]).
    pub fn clear(&self) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete(keys::CHECKPOINT);
        batch.delete_range(keys::FIRST, keys::XA);
        batch.delete_range(keys::table_end(keys::XA), keys::LAST.to_vec());
        self.write_synced(batch)
    }

    /// Forgets held XA transactions (those the server no longer has
    /// prepared).
    pub fn release_held_xa(&self, ids: &[String]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for id in ids {
            batch.delete(keys::xa(id));
        }
        self.write_synced(batch)
    }

    pub fn user(&self, user_id: i64) -> Result<Option<User>> {
        self.get(&keys::user(user_id))
    }

    pub fn preferences(&self, user_id: i64) -> Result<Option<Preferences>> {
        self.get(&keys::preferences(user_id))
    }

    pub fn session(&self, session_id: &[u8]) -> Result<Option<Session>> {
        self.get(&keys::session(session_id))
    }

    /// Several sessions in one batched read, in the order asked (`None`
    /// where a session does not exist). RocksDB looks the sorted keys up
    /// file by file, which costs far less than a read per key.
    pub fn sessions<'k>(
        &self,
        ids: impl IntoIterator<Item = &'k [u8]>,
    ) -> Result<Vec<Option<Session>>> {
        let mut wanted: Vec<(usize, Vec<u8>)> =
            ids.into_iter().map(keys::session).enumerate().collect();
        wanted.sort_unstable_by(|a, b| a.1.cmp(&b.1));
        let mut out: Vec<Option<Session>> = vec![None; wanted.len()];
        // In batches: each value found pins its block in the cache until
        // it is decoded.
        for batch in wanted.chunks(MULTI_GET_BATCH) {
            let keys = batch.iter().map(|(_, key)| key);
            let found = self.db.batched_multi_get_cf(self.family()?, keys, true);
            for ((at, _), raw) in batch.iter().zip(found) {
                if let Some(raw) = raw.map_err(|e| self.err(e))? {
                    out[*at] = Some(self.decode(&raw)?);
                }
            }
        }
        Ok(out)
    }

    /// The column family that holds every row.
    fn family(&self) -> Result<&ColumnFamily> {
        self.db
            .cf_handle(DEFAULT_COLUMN_FAMILY_NAME)
            .ok_or_else(|| self.err("the default column family is not open"))
    }

    /// Calls `f` with every entry of the user → sessions index, grouped by
    /// user id in ascending order.
    pub fn for_each_index_entry(
        &self,
        mut f: impl FnMut(i64, SessionRef) -> Result<()>,
    ) -> Result<()> {
        self.for_each_in_table(keys::INDEX, |k, v| {
            let (user_id, session_id) =
                keys::parse_index(k).ok_or_else(|| self.err("corrupt index key"))?;
            f(
                user_id,
                SessionRef {
                    session_id: session_id.to_vec(),
                    expires_at: keys::parse_index_value(v),
                },
            )
        })
    }

    /// Calls `f` with every session, in ascending order of id.
    pub fn for_each_session(&self, mut f: impl FnMut(Session) -> Result<()>) -> Result<()> {
        self.for_each_in_table(keys::SESSIONS, |_, v| f(self.decode(v)?))
    }

    /// Every row of one table, in key order.
    pub fn rows_of(&self, table: Table) -> Result<Vec<SourceRow>> {
        let mut rows = Vec::new();
        let prefix = match table {
            Table::Users => keys::USERS,
            Table::Preferences => keys::PREFERENCES,
            Table::Sessions => keys::SESSIONS,
            Table::Attributes => keys::ATTRIBUTES,
        };
        self.for_each_in_table(prefix, |_, v| {
            rows.push(match table {
                Table::Users => SourceRow::User(self.decode(v)?),
                Table::Preferences => SourceRow::Preferences(self.decode(v)?),
                Table::Sessions => SourceRow::Session(self.decode(v)?),
                Table::Attributes => SourceRow::Attribute(self.decode(v)?),
            });
            Ok(())
        })?;
        Ok(rows)
    }

    /// The row changes of a prepared XA transaction, if one is held.
    pub fn held_xa(&self, xid: &Xid) -> Result<Option<Vec<RowChange>>> {
        self.get(&keys::xa(&xid.0))
    }

    /// The ids of the prepared XA transactions held.
    pub fn held_xa_ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        self.for_each_in_table(keys::XA, |k, _| {
            ids.push(String::from_utf8_lossy(&k[1..]).into_owned());
            Ok(())
        })?;
        Ok(ids)
    }

    /// Starts a batch of state writes; nothing is visible until [`Self::commit`].
    pub fn batch(&self) -> StateBatch {
        StateBatch::default()
    }

    /// Writes a batch of rows without the write-ahead log: the bulk load of
    /// a snapshot, which has no checkpoint to protect until
    /// [`Self::persist`] is called before its commit.
    pub fn write_unlogged(&self, batch: StateBatch) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.disable_wal(true);
        self.db
            .write_opt(batch.batch, &opts)
            .map_err(|e| self.err(e))
    }

    /// Flushes every write to the state's files, [`Self::write_unlogged`]
    /// ones included.
    pub fn persist(&self) -> Result<()> {
        self.db.flush().map_err(|e| self.err(e))
    }

    /// Writes a batch together with the checkpoint it leads to, in one
    /// atomic write, flushed to disk (fsync).
    pub fn commit(&self, batch: StateBatch, checkpoint: &Checkpoint) -> Result<()> {
        self.commit_with(batch, checkpoint, true)
    }

    /// As [`Self::commit`], without waiting for the disk. The write is in the
    /// WAL, so it survives a crash of the process; a power loss may lose the
    /// last few commits, always a whole commit and in order, which leaves an
    /// older checkpoint with its matching state: the replicator then applies
    /// those groups again, and writes are idempotent. Streaming commits this
    /// way, keeping an fsync out of every group's latency.
    pub fn commit_unsynced(&self, batch: StateBatch, checkpoint: &Checkpoint) -> Result<()> {
        self.commit_with(batch, checkpoint, false)
    }

    fn commit_with(
        &self,
        mut batch: StateBatch,
        checkpoint: &Checkpoint,
        sync: bool,
    ) -> Result<()> {
        let raw = serde_json::to_vec(checkpoint).map_err(|e| self.err(e))?;
        batch.batch.put(keys::CHECKPOINT, raw);
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db
            .write_opt(batch.batch, &opts)
            .map_err(|e| self.err(e))
    }

    fn write_synced(&self, batch: WriteBatch) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts).map_err(|e| self.err(e))
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        match self.db.get_pinned(key).map_err(|e| self.err(e))? {
            Some(raw) => self.decode(&raw).map(Some),
            None => Ok(None),
        }
    }

    fn decode<T: DeserializeOwned>(&self, raw: &[u8]) -> Result<T> {
        postcard::from_bytes(raw).map_err(|e| self.err(format!("corrupt row: {e}")))
    }

    /// Calls `f` with every key and value of the table named by the one
    /// letter `table`, in key order.
    fn for_each_in_table(
        &self,
        table: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(keys::table_end(table));
        let mut iter = self.db.raw_iterator_opt(options);
        iter.seek(table);
        while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
            f(k, v)?;
            iter.next();
        }
        iter.status().map_err(|e| self.err(e))
    }
}

/// Creates the directory with mode 0700 where the platform has modes.
fn create_private_dir(path: &Path) -> Result<()> {
    let err = |e: std::io::Error| Error::State {
        path: path.to_owned(),
        message: format!(
            "cannot create the state directory: {e}. Set STATE_DIR to a writable directory"
        ),
    };
    if !path.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(path).map_err(err)?;
    }
    let probe = path.join(".write-test");
    std::fs::write(&probe, b"").map_err(|e| Error::State {
        path: path.to_owned(),
        message: format!(
            "the state directory is not writable: {e}. Set STATE_DIR to a writable directory"
        ),
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

#[cfg(test)]
mod tests;
