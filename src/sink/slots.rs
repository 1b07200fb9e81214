//! Redis Cluster's hash slots, as pure functions: which slot a key lives in,
//! a group's commands split by slot, the namespace's marker key of each
//! slot, and sets of slots.

use std::sync::OnceLock;

use crate::model::{Bytes, Command};

/// Redis Cluster's number of hash slots.
pub const SLOTS: usize = 16384;

/// The hash slot of a key: CRC16 (XMODEM) of the key, or of its hash tag
/// (the part between the first `{` and the next `}`, when not empty),
/// modulo 16384.
pub fn slot(key: &[u8]) -> u16 {
    let hashed = hash_tag(key).unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(hashed) % SLOTS as u16
}

fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let close = key[open + 1..].iter().position(|&b| b == b'}')?;
    let tag = &key[open + 1..open + 1 + close];
    (!tag.is_empty()).then_some(tag)
}

/// The commands split by the slot of their keys, in order within a slot,
/// slots in the order they first appear. A key's commands all land in one
/// part, so each part can be one `MULTI`/`EXEC` on the slot's master.
pub fn split_by_slot(commands: &[Command]) -> Vec<(u16, Vec<&Command>)> {
    let mut index: Vec<u32> = vec![u32::MAX; SLOTS];
    let mut parts: Vec<(u16, Vec<&Command>)> = Vec::new();
    for command in commands {
        let s = slot(command.key());
        let i = &mut index[usize::from(s)];
        if *i == u32::MAX {
            *i = parts.len() as u32;
            parts.push((s, Vec::new()));
        }
        parts[*i as usize].1.push(command);
    }
    parts
}

/// The namespace marker's key for one slot, in cluster mode: the
/// standalone marker's key followed by `:{tag}`, where the tag hashes to
/// that slot. When the prefix itself carries a hash tag, every key of the
/// namespace lives in one slot, and so does the one marker key.
pub fn marker_for_slot(marker: &[u8], slot_of_key: u16) -> Bytes {
    if hash_tag(marker).is_some() {
        return marker.to_vec();
    }
    let tag = &tags()[usize::from(slot_of_key)];
    [marker, b":{", tag.as_bytes(), b"}"].concat()
}

/// Every marker key of the namespace in cluster mode, with its slot: one
/// per slot, or the one key when the prefix pins the namespace to a slot.
pub fn marker_keys(marker: &[u8]) -> Vec<(u16, Bytes)> {
    if hash_tag(marker).is_some() {
        return vec![(slot(marker), marker.to_vec())];
    }
    (0..SLOTS as u16)
        .map(|s| (s, marker_for_slot(marker, s)))
        .collect()
}

/// For each slot, the smallest decimal number that hashes to it.
fn tags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        let mut tags = vec![String::new(); SLOTS];
        let mut left = SLOTS;
        let mut n: u64 = 0;
        while left > 0 {
            let tag = n.to_string();
            let s = usize::from(slot(tag.as_bytes()));
            if tags[s].is_empty() {
                tags[s] = tag;
                left -= 1;
            }
            n += 1;
        }
        tags
    })
}

/// Which part of the namespace something concerns: all of it, or the keys
/// of some slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    /// One flag per slot.
    Slots(Box<[bool]>),
}

impl Scope {
    /// The scope of the given slots; every slot given is the whole
    /// namespace.
    pub fn of_slots(slots: impl IntoIterator<Item = u16>) -> Scope {
        let mut flags = vec![false; SLOTS].into_boxed_slice();
        for s in slots {
            flags[usize::from(s) % SLOTS] = true;
        }
        match flags.iter().all(|&f| f) {
            true => Scope::All,
            false => Scope::Slots(flags),
        }
    }

    /// Whether the key is in this scope.
    pub fn holds(&self, key: &[u8]) -> bool {
        match self {
            Scope::All => true,
            Scope::Slots(flags) => flags[usize::from(slot(key))],
        }
    }

    /// Whether the slot is in this scope.
    pub fn has_slot(&self, s: u16) -> bool {
        match self {
            Scope::All => true,
            Scope::Slots(flags) => flags[usize::from(s) % SLOTS],
        }
    }

    /// How many slots the scope holds.
    pub fn count(&self) -> usize {
        match self {
            Scope::All => SLOTS,
            Scope::Slots(flags) => flags.iter().filter(|&&f| f).count(),
        }
    }

    /// The slots of the scope (all of them for [`Scope::All`]).
    pub fn slots(&self) -> Vec<u16> {
        (0..SLOTS as u16).filter(|&s| self.has_slot(s)).collect()
    }

    /// Both scopes together.
    pub fn union(self, other: Scope) -> Scope {
        match (self, other) {
            (Scope::Slots(mut a), Scope::Slots(b)) => {
                for (x, y) in a.iter_mut().zip(b.iter()) {
                    *x |= *y;
                }
                Scope::Slots(a)
            }
            _ => Scope::All,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"123456789"), 0x31C3);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_ne!(slot(b"foo{}{bar}"), slot(b"bar"));
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
        assert_eq!(slot(b"foo{bar}{zap}"), slot(b"bar"));
    }

    #[test]
    fn every_slot_has_its_own_marker() {
        for s in 0..SLOTS as u16 {
            let key = marker_for_slot(b"app:replicator:snapshot", s);
            assert_eq!(slot(&key), s, "{}", String::from_utf8_lossy(&key));
        }
        // A prefix with a hash tag keeps the namespace in one slot.
        let pinned = marker_for_slot(b"{app}:replicator:snapshot", 7);
        assert_eq!(pinned, b"{app}:replicator:snapshot");
    }

    #[test]
    fn split_keeps_each_keys_commands_together_and_in_order() {
        let hset = |k: &str| Command::HSet {
            key: k.into(),
            fields: vec![(b"f".to_vec(), b"v".to_vec())],
        };
        let expire = |k: &str| Command::ExpireAt {
            key: k.into(),
            at: 1,
        };
        let commands = vec![hset("a"), hset("b"), expire("a"), expire("b")];
        let parts = split_by_slot(&commands);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0, slot(b"a"));
        assert_eq!(parts[0].1, vec![&commands[0], &commands[2]]);
        assert_eq!(parts[1].1, vec![&commands[1], &commands[3]]);
    }

    #[test]
    fn scopes() {
        let lost = Scope::of_slots([slot(b"a")]);
        assert!(lost.holds(b"a"));
        assert!(!lost.holds(b"b"));
        assert_eq!(lost.slots(), vec![slot(b"a")]);
        assert_eq!(lost.count(), 1);
        let both = lost.union(Scope::of_slots([slot(b"b")]));
        assert!(both.holds(b"b"));
        assert_eq!(Scope::of_slots(0..SLOTS as u16), Scope::All);
        assert_eq!(both.union(Scope::All), Scope::All);
    }
}
