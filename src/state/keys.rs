//! RocksDB key layout. One letter names the table; ids are big-endian so
//! that keys of one user or one session are adjacent.
//!
//! | key                                   | value        |
//! | ------------------------------------- | ------------ |
//! | `u` user_id                            | `User`       |
//! | `p` user_id                            | `Preferences`|
//! | `s` session_id                         | `Session`    |
//! | `a` len(session_id) session_id attr_key | `Attribute`  |
//! | `i` user_id session_id                 | expires_at, µs (8 bytes, big-endian; empty when unknown) |
//! | `x` xid                                | a prepared XA transaction's `Vec<RowChange>` |
//! | `~checkpoint`                          | JSON `Checkpoint` |

use crate::model::Timestamp;

pub const CHECKPOINT: &[u8] = b"~checkpoint";
pub const ATTRIBUTES: &[u8] = b"a";
pub const INDEX: &[u8] = b"i";
pub const SESSIONS: &[u8] = b"s";
pub const USERS: &[u8] = b"u";
/// Held XA transactions: kept by a snapshot (see `StateStore::clear`).
pub const XA: &[u8] = b"x";
pub const PREFERENCES: &[u8] = b"p";
/// Every row key lies in `FIRST..LAST`; the checkpoint does not.
pub const FIRST: &[u8] = b"a";
pub const LAST: &[u8] = b"z";

/// The first key after every key of the table named by the one letter
/// `table`.
pub fn table_end(table: &[u8]) -> Vec<u8> {
    vec![table[0] + 1]
}

fn id(user_id: i64) -> [u8; 8] {
    ((user_id as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn user(user_id: i64) -> Vec<u8> {
    [&b"u"[..], &id(user_id)].concat()
}

pub fn preferences(user_id: i64) -> Vec<u8> {
    [&b"p"[..], &id(user_id)].concat()
}

pub fn session(session_id: &[u8]) -> Vec<u8> {
    [SESSIONS, session_id].concat()
}

pub fn attributes_of(session_id: &[u8]) -> Vec<u8> {
    let len = u32::try_from(session_id.len())
        .unwrap_or(u32::MAX)
        .to_be_bytes();
    [ATTRIBUTES, &len, session_id].concat()
}

pub fn attribute(session_id: &[u8], key: &[u8]) -> Vec<u8> {
    [&attributes_of(session_id)[..], key].concat()
}

pub fn xa(xid: &str) -> Vec<u8> {
    [XA, xid.as_bytes()].concat()
}

pub fn index_of(user_id: i64) -> Vec<u8> {
    [INDEX, &id(user_id)].concat()
}

pub fn index(user_id: i64, session_id: &[u8]) -> Vec<u8> {
    [&index_of(user_id)[..], session_id].concat()
}

pub fn parse_index(key: &[u8]) -> Option<(i64, &[u8])> {
    let rest = key.strip_prefix(INDEX)?;
    let (raw, session_id) = rest.split_at_checked(8)?;
    let user_id = (u64::from_be_bytes(raw.try_into().ok()?) ^ (1 << 63)) as i64;
    Some((user_id, session_id))
}

/// The value of an index entry: the session's `expires_at`.
pub fn index_value(expires_at: Option<Timestamp>) -> Vec<u8> {
    expires_at
        .map(|t| t.micros().to_be_bytes().to_vec())
        .unwrap_or_default()
}

pub fn parse_index_value(value: &[u8]) -> Option<Timestamp> {
    let micros = i64::from_be_bytes(value.try_into().ok()?);
    Some(Timestamp::from_micros(micros))
}
