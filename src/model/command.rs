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
