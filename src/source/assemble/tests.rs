//! The assembler, event by event, with no server.

use super::*;
use crate::model::{RowChange, SourceRow, Table, User, Xid};

fn pos(file: &str, offset: u64) -> BinlogPosition {
    BinlogPosition::parse(file, offset).unwrap()
}

const DB: &str = "sessions";

fn user(id: i64) -> RowChange {
    RowChange::Insert(SourceRow::User(User {
        user_id: id,
        username: format!("u{id}").into_bytes(),
        email: format!("u{id}@x").into_bytes(),
    }))
}

/// Feeds events, each ending 100 bytes after the one before.
struct Feed {
    a: Assembler,
    offset: u64,
}

impl Feed {
    fn new() -> Feed {
        Feed::at(&pos("binlog.000001", 100), 0, 1000)
    }

    fn at(position: &BinlogPosition, skip: u64, max_rows: usize) -> Feed {
        Feed {
            a: Assembler::new(DB, position, skip, max_rows),
            offset: position.offset,
        }
    }

    fn send(&mut self, event: SourceEvent) -> Result<Option<Piece>, Stop> {
        self.offset += 100;
        self.a.feed(Event {
            event,
            end: self.offset,
            timestamp: 7,
        })
    }

    fn ok(&mut self, event: SourceEvent) -> Option<Piece> {
        self.send(event).expect("no stop")
    }

    fn none(&mut self, event: SourceEvent) {
        let piece = self.ok(event.clone());
        assert!(piece.is_none(), "{event:?} yielded {piece:?}");
    }

    fn query(&mut self, text: &str) -> Result<Option<Piece>, Stop> {
        self.send(SourceEvent::Query {
            schema: DB.into(),
            text: text.into(),
        })
    }

    fn gtid(&mut self, seq: u64, standalone: bool, xa: bool) {
        self.none(SourceEvent::Gtid {
            gtid: Some((0, format!("0-1-{seq}"))),
            standalone,
            xa,
        });
    }
}

fn rows(piece: &Piece) -> &[RowChange] {
    match &piece.content {
        Content::Rows(changes) => changes,
        other => panic!("not rows: {other:?}"),
    }
}

fn q(text: &str) -> SourceEvent {
    SourceEvent::Query {
        schema: DB.into(),
        text: text.into(),
    }
}

#[test]
fn a_transaction_is_handed_out_at_its_commit_with_its_gtid() {
    let mut f = Feed::new();
    f.gtid(5, false, false);
    f.none(q("BEGIN"));
    f.none(SourceEvent::Skip); // table map
    f.none(SourceEvent::Rows(vec![user(1), user(2)]));
    let piece = f.ok(SourceEvent::Xid).expect("committed");
    assert_eq!(rows(&piece), &[user(1), user(2)]);
    assert!(piece.ends_transaction && !piece.heartbeat);
    assert_eq!(piece.position.to_string(), "binlog.000001:600 (gtid 0-1-5)");
    assert_eq!(piece.timestamp, 7);
}

#[test]
fn commit_as_a_query_and_rollback() {
    let mut f = Feed::new();
    f.none(q("BEGIN"));
    f.none(SourceEvent::Rows(vec![user(1)]));
    let piece = f.query("COMMIT").unwrap().unwrap();
    assert_eq!(rows(&piece), &[user(1)]);

    f.gtid(6, false, false);
    f.none(q("BEGIN"));
    f.none(SourceEvent::Rows(vec![user(2)]));
    let piece = f.query("ROLLBACK").unwrap().unwrap();
    assert!(
        piece.content.is_progress(),
        "a rolled-back transaction applies nothing"
    );
    assert_eq!(piece.position.gtid.as_deref(), Some("0-1-6"));
}

#[test]
fn unrelated_events_only_move_the_position() {
    let mut f = Feed::new();
    let piece = f.ok(SourceEvent::Skip).unwrap();
    assert!(piece.content.is_progress());
    assert_eq!(piece.position.offset, 200);
    // DDL of another table, standalone.
    f.gtid(9, true, false);
    let piece = f.query("CREATE TABLE other (id INT)").unwrap().unwrap();
    assert!(piece.content.is_progress());
    assert_eq!(piece.position.gtid.as_deref(), Some("0-1-9"));
    assert!(!f.a.take_reshaped());
}

#[test]
fn a_large_transaction_comes_in_pieces_that_say_where_to_resume() {
    let start = pos("binlog.000001", 100);
    let mut f = Feed::at(&start, 0, 2);
    f.none(q("BEGIN"));
    f.none(SourceEvent::Rows(vec![user(1)]));
    let first = f.ok(SourceEvent::Rows(vec![user(2), user(3)])).unwrap();
    assert_eq!(rows(&first), &[user(1), user(2), user(3)]);
    assert!(!first.ends_transaction);
    assert_eq!(
        (first.position.clone(), first.skip_rows),
        (start.clone(), 3)
    );
    f.none(SourceEvent::Rows(vec![user(4)]));
    let last = f.ok(SourceEvent::Xid).unwrap();
    assert_eq!(rows(&last), &[user(4)]);
    assert!(last.ends_transaction);

    // Resuming there skips the three rows already applied.
    let mut again = Feed::at(&start, 3, 2);
    again.none(q("BEGIN"));
    again.none(SourceEvent::Rows(vec![user(1)]));
    again.none(SourceEvent::Rows(vec![user(2), user(3)]));
    again.none(SourceEvent::Rows(vec![user(4)]));
    assert_eq!(rows(&again.ok(SourceEvent::Xid).unwrap()), &[user(4)]);
    // Only the first transaction is skipped into.
    again.none(q("BEGIN"));
    again.none(SourceEvent::Rows(vec![user(5)]));
    assert_eq!(rows(&again.ok(SourceEvent::Xid).unwrap()), &[user(5)]);
}

#[test]
fn rollback_to_savepoint_drops_what_followed_it() {
    let mut f = Feed::new();
    f.none(q("BEGIN"));
    f.none(SourceEvent::Rows(vec![user(1)]));
    f.none(q("SAVEPOINT `sp1`"));
    f.none(SourceEvent::Rows(vec![user(2)]));
    f.none(q("SAVEPOINT `sp2`"));
    f.none(SourceEvent::Rows(vec![user(3)]));
    f.none(q("ROLLBACK TO `sp1`"));
    f.none(SourceEvent::Rows(vec![user(4)]));
    // sp2 went with the rollback to sp1.
    let err = f.query("ROLLBACK TO `sp2`").unwrap_err();
    assert!(err.what.contains("never set"), "{}", err.what);

    let mut f = Feed::new();
    f.none(q("BEGIN"));
    f.none(SourceEvent::Rows(vec![user(1)]));
    f.none(q("SAVEPOINT sp"));
    f.none(SourceEvent::Rows(vec![user(2)]));
    f.none(q("ROLLBACK TO SAVEPOINT sp"));
    f.none(SourceEvent::Rows(vec![user(3)]));
    f.none(q("RELEASE SAVEPOINT sp"));
    assert_eq!(rows(&f.ok(SourceEvent::Xid).unwrap()), &[user(1), user(3)]);
}

#[test]
fn a_rollback_past_rows_already_applied_stops() {
    let mut f = Feed::at(&pos("binlog.000001", 100), 0, 2);
    f.none(q("BEGIN"));
    f.none(q("SAVEPOINT sp"));
    let piece = f.ok(SourceEvent::Rows(vec![user(1), user(2)])).unwrap();
    assert!(!piece.ends_transaction);
    let stop = f.query("ROLLBACK TO sp").unwrap_err();
    assert!(stop.what.contains("in part"), "{}", stop.what);
    assert_eq!(
        stop.position.offset, 400,
        "the stop names the event's own position"
    );

    let mut f = Feed::at(&pos("binlog.000001", 100), 0, 1);
    f.none(q("BEGIN"));
    f.ok(SourceEvent::Rows(vec![user(1)])).unwrap();
    assert!(f.query("ROLLBACK").is_err());
}

#[test]
fn mariadb_xa_is_held_at_prepare_and_resolved_later() {
    let xid = Xid::from_parts(1, b"a1", b"");
    let mut f = Feed::new();
    f.gtid(10, false, true); // XA START lives in the GTID event
    f.none(SourceEvent::Rows(vec![user(1)]));
    f.none(q("XA END X'6131',X'',1"));
    let prepared = f
        .ok(SourceEvent::XaPrepare {
            xid: xid.clone(),
            one_phase: false,
        })
        .unwrap();
    assert_eq!(
        prepared.content,
        Content::XaPrepare {
            xid: xid.clone(),
            changes: vec![user(1)]
        }
    );
    assert_eq!(prepared.position.gtid.as_deref(), Some("0-1-10"));
    // Another transaction commits in between, in its own order.
    f.gtid(11, false, false);
    f.none(q("BEGIN"));
    f.none(SourceEvent::Rows(vec![user(2)]));
    assert_eq!(rows(&f.ok(SourceEvent::Xid).unwrap()), &[user(2)]);
    // XA COMMIT: a standalone GTID group with the query.
    f.gtid(12, true, false);
    let committed = f.query("XA COMMIT X'6131',X'',1").unwrap().unwrap();
    assert_eq!(committed.content, Content::XaCommit(xid.clone()));
    assert_eq!(committed.position.gtid.as_deref(), Some("0-1-12"));

    f.gtid(13, true, false);
    let rolled = f.query("XA ROLLBACK X'6131',X'',1").unwrap().unwrap();
    assert_eq!(rolled.content, Content::XaRollback(xid));
}

#[test]
fn mysql_xa_frames_and_one_phase() {
    let xid = Xid::from_parts(1, b"m", b"");
    let mut f = Feed::at(&pos("binlog.000001", 100), 0, 1);
    // MySQL: GTID, then `XA START` as a query; never cut in pieces.
    f.none(SourceEvent::Gtid {
        gtid: None,
        standalone: true,
        xa: false,
    });
    f.none(q("XA START X'6d',X'',1"));
    f.none(SourceEvent::Rows(vec![user(1), user(2)]));
    f.none(q("XA END X'6d',X'',1"));
    let prepared = f
        .ok(SourceEvent::XaPrepare {
            xid: xid.clone(),
            one_phase: false,
        })
        .unwrap();
    assert_eq!(prepared.content.rows(), 2);

    // XA COMMIT ... ONE PHASE: MySQL's prepare event says so, and commits.
    f.none(q("XA START X'6e',X'',1"));
    f.none(q("XA END X'6e',X'',1"));
    let one = f
        .ok(SourceEvent::XaPrepare {
            xid: Xid::from_parts(1, b"n", b""),
            one_phase: true,
        })
        .unwrap();
    assert_eq!(one.content, Content::Rows(vec![]));
}

#[test]
fn truncate_reshape_and_statements() {
    let mut f = Feed::new();
    f.gtid(20, true, false);
    let piece = f.query("TRUNCATE TABLE session_data").unwrap().unwrap();
    assert_eq!(piece.content, Content::Truncate(Table::Attributes));

    f.gtid(21, true, false);
    let piece = f
        .query("ALTER TABLE users ADD COLUMN nick TEXT")
        .unwrap()
        .unwrap();
    assert!(piece.content.is_progress());
    assert!(f.a.take_reshaped() && !f.a.take_reshaped());

    // Statement-format DML inside BEGIN ... COMMIT stops at the statement.
    f.gtid(22, false, false);
    f.none(q("BEGIN"));
    let before = f.a.position();
    let stop = f
        .query("UPDATE users SET email = 'x' WHERE user_id = 1")
        .unwrap_err();
    assert_eq!(stop.table, Some(Table::Users));
    assert_eq!(stop.position, before);
    assert!(stop.what.contains("statement"), "{}", stop.what);
}

#[test]
fn rotation_heartbeats_and_unsupported_events() {
    let mut f = Feed::new();
    let piece = f
        .ok(SourceEvent::Rotate {
            file: "binlog.000002".parse().unwrap(),
            offset: 4,
        })
        .unwrap();
    assert_eq!(piece.position.to_string(), "binlog.000002:4");
    // The format description of the new file does not move us.
    f.a.feed(Event {
        event: SourceEvent::FormatDescription,
        end: 0,
        timestamp: 0,
    })
    .unwrap();
    assert_eq!(f.a.position().offset, 4);

    let beat = f.ok(SourceEvent::Heartbeat).unwrap();
    assert!(beat.heartbeat && beat.content.is_progress());
    // Inside a transaction a heartbeat says nothing.
    f.none(q("BEGIN"));
    f.none(SourceEvent::Heartbeat);
    let stop = f
        .send(SourceEvent::Unsupported("a compressed rows event".into()))
        .unwrap_err();
    assert_eq!(stop.what, "a compressed rows event");
}

#[test]
fn a_transaction_that_never_committed_is_dropped() {
    // The server stopped while writing it: the next file, or the next
    // transaction, starts with no commit of it.
    let mut f = Feed::new();
    f.gtid(30, false, false);
    f.none(q("BEGIN"));
    f.none(SourceEvent::Rows(vec![user(1)]));
    f.ok(SourceEvent::Rotate {
        file: "binlog.000002".parse().unwrap(),
        offset: 4,
    });
    f.gtid(31, false, false);
    f.none(q("BEGIN"));
    f.none(SourceEvent::Rows(vec![user(2)]));
    f.gtid(32, false, false); // 31 never committed either
    f.none(q("BEGIN"));
    f.none(SourceEvent::Rows(vec![user(3)]));
    f.none(q("BEGIN")); // nor did 32
    f.none(SourceEvent::Rows(vec![user(4)]));
    let piece = f.ok(SourceEvent::Xid).unwrap();
    assert_eq!(rows(&piece), &[user(4)]);

    // Part of one applied already: a stop, not a silent drop.
    let mut f = Feed::at(&pos("binlog.000001", 100), 0, 1);
    f.none(q("BEGIN"));
    f.ok(SourceEvent::Rows(vec![user(1)])).unwrap();
    let stop = f
        .send(SourceEvent::Gtid {
            gtid: None,
            standalone: true,
            xa: false,
        })
        .unwrap_err();
    assert!(stop.what.contains("never committed"), "{}", stop.what);
}

#[test]
fn a_compressed_payload_must_bring_its_commit() {
    // MySQL: GTID, the payload, then the events inside it.
    let mut f = Feed::new();
    let mysql_gtid = || SourceEvent::Gtid {
        gtid: None,
        standalone: true,
        xa: false,
    };
    f.none(mysql_gtid());
    f.none(SourceEvent::Payload);
    f.none(q("BEGIN"));
    f.none(SourceEvent::Rows(vec![user(1)]));
    assert_eq!(rows(&f.ok(SourceEvent::Xid).unwrap()), &[user(1)]);
    // A payload whose events never came: a stop at the next transaction.
    f.none(mysql_gtid());
    f.none(SourceEvent::Payload);
    let stop = f.send(mysql_gtid()).unwrap_err();
    assert!(
        stop.what.contains("compressed transaction payload"),
        "{}",
        stop.what
    );
}

#[test]
fn rows_without_begin_open_a_transaction() {
    let mut f = Feed::new();
    f.none(SourceEvent::Rows(vec![user(1)]));
    assert_eq!(rows(&f.ok(SourceEvent::Xid).unwrap()), &[user(1)]);
}

#[test]
fn gtid_positions_are_kept_per_domain() {
    let g = parse_gtids(Some("0-1-23,1-2-5"));
    assert_eq!(g[&0], "0-1-23");
    assert_eq!(g[&1], "1-2-5");
    assert!(parse_gtids(None).is_empty());
    assert!(parse_gtids(Some("")).is_empty());
}
