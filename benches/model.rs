//! Micro-benchmarks of the pure hot paths: reading a binlog row image,
//! decoding a row's values, the model (row change + state → Redis
//! commands), merging a group's commands, and RESP encoding.
//!
//!     cargo bench --bench model

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mysql_async::consts::ColumnType;
use mysql_async::Value;
use mysql_common::io::ParseBuf;
use replicator::model::{
    apply, coalesce, finish_group, write_session, Attribute, Command, GroupOutput, Keys, Overlay,
    Preferences, RowChange, Session, SourceRow, StateView, Timestamp, User,
};
use replicator::sink::pipeline;
use replicator::source::image::{ColumnSpec, Layout};
use replicator::source::Table;
use replicator::testing::MemState;

const NOW: i64 = 1_800_000_000;

fn session(i: usize) -> Session {
    Session {
        session_id: format!("sess-{i:08}-abcdef").into_bytes(),
        user_id: 1,
        ip_address: Some(b"192.0.2.1".to_vec()),
        user_agent: Some(
            b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0".to_vec(),
        ),
        created_at: Some(Timestamp::from_parts(NOW - 3600, 0)),
        expires_at: Some(Timestamp::from_parts(NOW + 3600, 0)),
        last_activity_at: Some(Timestamp::from_parts(NOW - 60, 250_000)),
    }
}

fn attribute(i: usize, k: usize) -> Attribute {
    Attribute {
        session_id: format!("sess-{i:08}-abcdef").into_bytes(),
        key: format!("key{k}").into_bytes(),
        value: Some(br#"{"items":[{"sku":"SKU-1","qty":2}],"currency":"EUR"}"#.to_vec()),
    }
}

/// A state of one user with ten sessions of three attributes each.
fn state() -> MemState {
    let mut m = MemState::default();
    m.insert(SourceRow::User(User {
        user_id: 1,
        username: b"alice".to_vec(),
        email: b"alice@example.com".to_vec(),
    }));
    m.insert(SourceRow::Preferences(Preferences {
        user_id: 1,
        theme: Some(b"dark".to_vec()),
        language: Some(b"en".to_vec()),
        notifications_enabled: Some(true),
    }));
    for i in 0..10 {
        m.insert(SourceRow::Session(session(i)));
        for k in 0..3 {
            m.insert(SourceRow::Attribute(attribute(i, k)));
        }
    }
    m
}

fn decode(c: &mut Criterion) {
    let values = || {
        vec![
            Value::Bytes(b"sess-00000001-abcdef".to_vec()),
            Value::Int(42),
            Value::Bytes(b"192.0.2.1".to_vec()),
            Value::Bytes(b"Mozilla/5.0 (X11; Linux x86_64)".to_vec()),
            Value::Bytes(b"1700000000".to_vec()),
            Value::Bytes(b"1800000000.250000".to_vec()),
            Value::NULL,
        ]
    };
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("user_sessions row", |b| {
        b.iter_batched(
            values,
            |v| Table::Sessions.decode(v).unwrap(),
            BatchSize::SmallInput,
        )
    });
    // The same row as the binlog carries it: one image of a rows event.
    const VARCHAR_1020: &[u8] = &[0xfc, 0x03];
    let spec = |ty, meta| ColumnSpec {
        ty,
        meta,
        unsigned: false,
    };
    let columns = [
        spec(ColumnType::MYSQL_TYPE_VARCHAR, VARCHAR_1020),
        spec(ColumnType::MYSQL_TYPE_LONG, &[]),
        spec(ColumnType::MYSQL_TYPE_VARCHAR, &[180, 0]),
        spec(ColumnType::MYSQL_TYPE_BLOB, &[2]),
        spec(ColumnType::MYSQL_TYPE_TIMESTAMP2, &[0]),
        spec(ColumnType::MYSQL_TYPE_TIMESTAMP2, &[0]),
        spec(ColumnType::MYSQL_TYPE_TIMESTAMP2, &[0]),
    ];
    let layout =
        Layout::from_columns(Table::Sessions, &columns, Table::Sessions.columns(), 0).unwrap();
    let mut image = vec![0b0100_0000]; // last_activity_at is NULL
    let session_id = b"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    image.extend_from_slice(&(session_id.len() as u16).to_le_bytes());
    image.extend_from_slice(session_id);
    image.extend_from_slice(&42i32.to_le_bytes());
    image.push(9);
    image.extend_from_slice(b"192.0.2.1");
    let agent = b"Mozilla/5.0 (X11; Linux x86_64)";
    image.extend_from_slice(&(agent.len() as u16).to_le_bytes());
    image.extend_from_slice(agent);
    image.extend_from_slice(&1_700_000_000u32.to_be_bytes());
    image.extend_from_slice(&1_800_000_000u32.to_be_bytes());
    let present = bitvec::bitvec![u8, bitvec::order::Lsb0; 1; 7];
    g.bench_function("user_sessions binlog image", |b| {
        b.iter(|| {
            layout
                .image(&mut ParseBuf(&image), &present, false)
                .unwrap()
        })
    });
    g.finish();
}

fn model(c: &mut Criterion) {
    let keys = Keys::new("app:");
    let now = Timestamp::from_parts(NOW, 0);
    let base = state();
    let mut g = c.benchmark_group("model");
    g.throughput(Throughput::Elements(1));
    g.bench_function("full session hash", |b| {
        let s = session(0);
        let attrs = base.attributes(&s.session_id).unwrap();
        b.iter(|| {
            write_session(
                &keys,
                now,
                &s,
                base.users.get(&1),
                base.preferences.get(&1),
                &attrs,
            )
        })
    });
    g.bench_function("session_data insert", |b| {
        b.iter(|| {
            let mut overlay = Overlay::new(&base);
            let mut out = GroupOutput::default();
            let change = RowChange::Insert(SourceRow::Attribute(attribute(3, 7)));
            apply(change, &mut overlay, &keys, now, &mut out).unwrap();
            finish_group(&overlay, &keys, now, &mut out).unwrap();
            out
        })
    });
    g.bench_function("users update (fan-out to 10 sessions)", |b| {
        b.iter(|| {
            let mut overlay = Overlay::new(&base);
            let mut out = GroupOutput::default();
            let before = SourceRow::User(base.users[&1].clone());
            let after = SourceRow::User(User {
                user_id: 1,
                username: b"alicia".to_vec(),
                email: b"a@x".to_vec(),
            });
            apply(
                RowChange::Update { before, after },
                &mut overlay,
                &keys,
                now,
                &mut out,
            )
            .unwrap();
            out
        })
    });
    g.bench_function("user_sessions insert (full hash + index)", |b| {
        b.iter(|| {
            let mut overlay = Overlay::new(&base);
            let mut out = GroupOutput::default();
            apply(
                RowChange::Insert(SourceRow::Session(session(99))),
                &mut overlay,
                &keys,
                now,
                &mut out,
            )
            .unwrap();
            finish_group(&overlay, &keys, now, &mut out).unwrap();
            out
        })
    });
    g.finish();
}

fn resp(c: &mut Criterion) {
    let keys = Keys::new("app:");
    let now = Timestamp::from_parts(NOW, 0);
    let base = state();
    let commands: Vec<_> = (0..10)
        .flat_map(|i| {
            let s = session(i);
            write_session(
                &keys,
                now,
                &s,
                base.users.get(&1),
                base.preferences.get(&1),
                &base.attributes(&s.session_id).unwrap(),
            )
            .unwrap()
        })
        .collect();
    let mut g = c.benchmark_group("resp");
    g.throughput(Throughput::Elements(10));
    g.bench_function("10 full sessions as one MULTI/EXEC", |b| {
        b.iter(|| pipeline(commands.iter(), true).get_packed_pipeline())
    });
    g.finish();
}

/// Merging a group's commands: as a bulk user update and a bulk preference
/// update make it (two field writes to each of 8,000 session hashes, each
/// with its `EXPIREAT`), and as most streaming groups are (each hash
/// written once).
fn coalescing(c: &mut Criterion) {
    let keys = Keys::new("app:");
    let writes = |fields: &[&str], hashes: usize| -> Vec<Command> {
        let keys = &keys;
        fields
            .iter()
            .flat_map(|field| {
                (0..hashes).flat_map(move |i| {
                    let key = keys.session(format!("{i:032x}").as_bytes());
                    [
                        Command::HSet {
                            key: key.clone(),
                            fields: vec![(field.as_bytes().to_vec(), b"value".to_vec())],
                        },
                        Command::ExpireAt {
                            key,
                            at: NOW + 3600,
                        },
                    ]
                })
            })
            .collect()
    };
    let mut g = c.benchmark_group("coalesce");
    for (name, commands) in [
        (
            "32,000 commands on 8,000 hashes",
            writes(&["email", "theme"], 8_000),
        ),
        (
            "32,000 commands on 16,000 hashes, each written once",
            writes(&["email"], 16_000),
        ),
    ] {
        g.throughput(Throughput::Elements(commands.len() as u64));
        g.bench_function(name, |b| {
            b.iter_batched(|| commands.clone(), coalesce, BatchSize::LargeInput)
        });
    }
    g.finish();
}

criterion_group!(benches, decode, model, resp, coalescing);
criterion_main!(benches);
