//! Redis commands as values, so the model can produce them without I/O.

use super::Bytes;

/// One Redis write of the model. The sink turns these into RESP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `DEL key`
    Del(Bytes),
    /// `HSET key field value [field value ...]`
    HSet {
        key: Bytes,
        fields: Vec<(Bytes, Bytes)>,
    },
    /// `HDEL key field [field ...]`
    HDel { key: Bytes, fields: Vec<Bytes> },
    /// `EXPIREAT key seconds`
    ExpireAt { key: Bytes, at: i64 },
    /// `ZADD key score member [score member ...]`
    ZAdd {
        key: Bytes,
        members: Vec<(i64, Bytes)>,
    },
    /// `SET key value`
    Set { key: Bytes, value: Bytes },
}

impl Command {
    /// The key the command writes.
    pub fn key(&self) -> &[u8] {
        match self {
            Command::Del(key)
            | Command::HSet { key, .. }
            | Command::HDel { key, .. }
            | Command::ExpireAt { key, .. }
            | Command::ZAdd { key, .. }
            | Command::Set { key, .. } => key,
        }
    }
}

/// A command without its key.
pub(crate) enum Op {
    Del,
    HSet(Vec<(Bytes, Bytes)>),
    HDel(Vec<Bytes>),
    ExpireAt(i64),
    ZAdd(Vec<(i64, Bytes)>),
    Set(Bytes),
}

impl Command {
    /// The key, and what is done to it.
    pub(crate) fn into_parts(self) -> (Bytes, Op) {
        match self {
            Command::Del(key) => (key, Op::Del),
            Command::HSet { key, fields } => (key, Op::HSet(fields)),
            Command::HDel { key, fields } => (key, Op::HDel(fields)),
            Command::ExpireAt { key, at } => (key, Op::ExpireAt(at)),
            Command::ZAdd { key, members } => (key, Op::ZAdd(members)),
            Command::Set { key, value } => (key, Op::Set(value)),
        }
    }
}
