//! Every metric the replicator exports, with its meaning, and the functions
//! that record them.

use metrics::{counter, describe_counter, describe_gauge, gauge, Unit};

use super::Health;
use crate::model::{Command, RowChange, Table};
use crate::position::BinlogPosition;

pub const ROW_EVENTS: &str = "replicator_row_events_total";
pub const TRANSACTIONS: &str = "replicator_transactions_total";
pub const GROUPS: &str = "replicator_groups_total";
pub const REDIS_COMMANDS: &str = "replicator_redis_commands_total";
pub const REDIS_ERRORS: &str = "replicator_redis_errors_total";
pub const RECONNECTS: &str = "replicator_reconnects_total";
pub const CHECKPOINT_FILE: &str = "replicator_checkpoint_file_sequence";
pub const CHECKPOINT_OFFSET: &str = "replicator_checkpoint_offset_bytes";
pub const CHECKPOINT_TIME: &str = "replicator_checkpoint_timestamp_seconds";
pub const LAG: &str = "replicator_lag_seconds";
pub const STREAM_STOPS: &str = "replicator_stream_stops_total";
pub const SNAPSHOT_ROWS: &str = "replicator_snapshot_rows";
pub const SNAPSHOT_ROWS_ESTIMATED: &str = "replicator_snapshot_rows_estimated";
pub const SNAPSHOT_COMMANDS: &str = "replicator_snapshot_redis_commands_total";
pub const SNAPSHOT_RUNNING: &str = "replicator_snapshot_in_progress";
pub const SOURCE_FILE: &str = "replicator_source_file_sequence";
pub const SOURCE_OFFSET: &str = "replicator_source_offset_bytes";
pub const HEALTHY: &str = "replicator_healthy";
pub const READY: &str = "replicator_ready";
pub const STREAMING: &str = "replicator_streaming";
pub const STOPPED: &str = "replicator_stream_stopped";
pub const BUILD_INFO: &str = "replicator_build_info";

/// Registers the descriptions shown in `/metrics`.
pub fn describe() {
    describe_counter!(
        ROW_EVENTS,
        "Row changes applied, by table and kind (insert, update, delete)."
    );
    describe_counter!(
        TRANSACTIONS,
        "Source transactions applied (a large one counts once, when its last step is applied)."
    );
    describe_counter!(
        GROUPS,
        "Groups of transactions written to Redis, each as one MULTI/EXEC."
    );
    describe_counter!(REDIS_COMMANDS, "Redis commands written, by command.");
    describe_counter!(
        REDIS_ERRORS,
        "Failed Redis writes, by kind: transient (retried) or fatal."
    );
    describe_counter!(
        STREAM_STOPS,
        "Times the stream stopped on a binlog event it cannot apply exactly (see the log's error)."
    );
    describe_counter!(
        RECONNECTS,
        "Connections re-established after a failure, by target (mysql, redis)."
    );
    describe_gauge!(
        CHECKPOINT_FILE,
        "Sequence number of the binlog file of the committed checkpoint."
    );
    describe_gauge!(
        CHECKPOINT_OFFSET,
        Unit::Bytes,
        "Offset in that file of the committed checkpoint."
    );
    describe_gauge!(
        CHECKPOINT_TIME,
        Unit::Seconds,
        "Unix time of the last checkpoint commit."
    );
    describe_gauge!(
        LAG,
        Unit::Seconds,
        "Now minus the commit time of the last applied event; 0 when caught up on an idle stream."
    );
    describe_gauge!(SNAPSHOT_ROWS, "Rows read so far by the snapshot, by table.");
    describe_gauge!(
        SNAPSHOT_ROWS_ESTIMATED,
        "The server's estimate of each table's rows, at snapshot start."
    );
    describe_counter!(
        SNAPSHOT_COMMANDS,
        "Redis commands written by snapshots and namespace rebuilds (see --snapshot-max-rate)."
    );
    describe_gauge!(
        SNAPSHOT_RUNNING,
        "1 while a snapshot (or a rebuild of a lost namespace) runs, else 0."
    );
    describe_gauge!(
        SOURCE_FILE,
        "Sequence number of the source server's current binlog file, read every 10s."
    );
    describe_gauge!(
        SOURCE_OFFSET,
        Unit::Bytes,
        "Offset in that file of the source server's binlog, read every 10s."
    );
    describe_gauge!(HEALTHY, "1 while /healthz answers 200, else 0.");
    describe_gauge!(READY, "1 while /readyz answers 200, else 0.");
    describe_gauge!(
        STREAMING,
        "1 while the binlog stream is connected and applied, else 0 (snapshot, outage, stop)."
    );
    describe_gauge!(
        STOPPED,
        "1 once the stream stopped on an event it cannot apply exactly (see the log's error)."
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1, labelled with the replicator's version."
    );
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    gauge!(SNAPSHOT_RUNNING).set(0.0);
    counter!(SNAPSHOT_COMMANDS).absolute(0);
    counter!(STREAM_STOPS).absolute(0);
    // Series that only move on an incident exist from the start, at zero.
    for target in ["mysql", "redis"] {
        counter!(RECONNECTS, "target" => target).absolute(0);
    }
    for kind in ["transient", "fatal"] {
        counter!(REDIS_ERRORS, "kind" => kind).absolute(0);
    }
    counter!(GROUPS).absolute(0);
    counter!(TRANSACTIONS).absolute(0);
}

const KINDS: [&str; 3] = ["insert", "update", "delete"];

/// Row changes of a group by table and kind: tallied per row (an array
/// increment), recorded once per group (no metrics lookup on the row path).
#[derive(Debug, Default)]
pub struct RowTally([[u64; 3]; 4]);

impl RowTally {
    pub fn add(&mut self, change: &RowChange) {
        let (kind, row) = match change {
            RowChange::Insert(row) => (0, row),
            RowChange::Update { after, .. } => (1, after),
            RowChange::Delete(row) | RowChange::Remove(row) => (2, row),
        };
        self.0[Table::of(row) as usize][kind] += 1;
    }
}

/// The row changes of a group that Redis acknowledged.
pub fn rows_applied(tally: &RowTally) {
    for (table, kinds) in Table::ALL.iter().zip(tally.0) {
        for (kind, n) in KINDS.iter().zip(kinds) {
            if n > 0 {
                counter!(ROW_EVENTS, "table" => table.name(), "kind" => *kind).increment(n);
            }
        }
    }
}

/// Redis commands of a group by kind, counted where the commands are
/// written and recorded when the group is committed.
#[derive(Debug, Default, Clone, Copy)]
pub struct CommandTally([u64; COMMAND_NAMES.len()]);

impl CommandTally {
    pub fn of(commands: &[Command]) -> Self {
        let mut tally = CommandTally::default();
        for c in commands {
            tally.0[command_index(c)] += 1;
        }
        tally
    }
}

/// A group written to Redis and committed.
pub fn group_applied(transactions: u64, commands: &CommandTally) {
    counter!(GROUPS).increment(1);
    counter!(TRANSACTIONS).increment(transactions);
    for (i, n) in commands.0.into_iter().enumerate() {
        if n > 0 {
            counter!(REDIS_COMMANDS, "command" => COMMAND_NAMES[i]).increment(n);
        }
    }
}

const COMMAND_NAMES: [&str; 6] = ["DEL", "HSET", "HDEL", "EXPIREAT", "ZADD", "SET"];

fn command_index(c: &Command) -> usize {
    match c {
        Command::Del(_) => 0,
        Command::HSet { .. } => 1,
        Command::HDel { .. } => 2,
        Command::ExpireAt { .. } => 3,
        Command::ZAdd { .. } => 4,
        Command::Set { .. } => 5,
    }
}

pub fn redis_error(transient: bool) {
    let kind = if transient { "transient" } else { "fatal" };
    counter!(REDIS_ERRORS, "kind" => kind).increment(1);
}

pub fn stream_stopped() {
    counter!(STREAM_STOPS).increment(1);
}

pub fn reconnect(target: &'static str) {
    counter!(RECONNECTS, "target" => target).increment(1);
}

pub fn checkpoint(position: &BinlogPosition, committed_at: i64) {
    gauge!(CHECKPOINT_FILE).set(position.file.sequence() as f64);
    gauge!(CHECKPOINT_OFFSET).set(position.offset as f64);
    gauge!(CHECKPOINT_TIME).set(committed_at as f64);
}

pub fn lag(seconds: f64) {
    gauge!(LAG).set(seconds);
}

/// The health gauges, from `health` as the endpoints answer now.
pub fn health_gauges(health: &Health) {
    let bit = |b: bool| if b { 1.0 } else { 0.0 };
    gauge!(HEALTHY).set(bit(health.is_healthy()));
    gauge!(READY).set(bit(health.is_ready()));
    gauge!(STREAMING).set(bit(health.is_streaming()));
    gauge!(STOPPED).set(bit(health.is_stopped()));
}

pub fn source_position(position: &BinlogPosition) {
    gauge!(SOURCE_FILE).set(position.file.sequence() as f64);
    gauge!(SOURCE_OFFSET).set(position.offset as f64);
}

/// Marks a snapshot as running for as long as it is held.
pub struct SnapshotRunning(());

impl SnapshotRunning {
    pub fn start() -> Self {
        gauge!(SNAPSHOT_RUNNING).set(1.0);
        SnapshotRunning(())
    }
}

impl Drop for SnapshotRunning {
    fn drop(&mut self) {
        gauge!(SNAPSHOT_RUNNING).set(0.0);
    }
}

pub fn snapshot_commands(n: usize) {
    counter!(SNAPSHOT_COMMANDS).increment(n as u64);
}

pub fn snapshot_rows(table: &str, rows: u64, estimate: u64) {
    gauge!(SNAPSHOT_ROWS, "table" => table.to_string()).set(rows as f64);
    gauge!(SNAPSHOT_ROWS_ESTIMATED, "table" => table.to_string()).set(estimate as f64);
}
