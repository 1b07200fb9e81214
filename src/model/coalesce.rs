//! A group's commands, merged per key.
//!
//! A group is written as one `MULTI`/`EXEC`, so no reader sees the commands
//! one by one: only the net effect on each key counts. A user update and a
//! preference update in the same group, say, each write the user's live
//! sessions; merged, each session gets one `HSET` of both fields and one
//! `EXPIREAT` instead of two of each. Redis executes fewer commands for the
//! same result; its work is a large share of what streaming costs.
//!
//! The net effect of a key's commands, in order, is at most: `DEL`, `HDEL` of
//! the fields removed, `HSET` of the fields' last values, `ZADD`, `SET`,
//! `EXPIREAT`. That is exact when every `HSET` is followed by an `EXPIREAT`
//! of its key, and a key's `EXPIREAT`s between two `DEL`s carry one value
//! (an `EXPIREAT` in the past deletes the key, so with two values the order
//! would matter). The model's commands always are so: a session's expiry
//! changes only through a whole rewrite, which starts with `DEL`. A key
//! whose expiry changes anyway is passed through as it came.

use std::hash::BuildHasher;

use hashbrown::hash_table::Entry;
use hashbrown::{DefaultHashBuilder, HashTable};

use super::command::Op;
use super::{Bytes, Command};

/// The net effect of a run of commands on one key.
#[derive(Debug)]
struct Net {
    key: Bytes,
    /// The key is deleted first.
    del: bool,
    fields: Fields,
    zset: Vec<(i64, Bytes)>,
    set: Option<Bytes>,
    expire_at: Option<i64>,
}

/// The hash fields a key's commands write.
#[derive(Debug, Default)]
enum Fields {
    #[default]
    None,
    /// One `HSET` and nothing else that writes fields: the common case (a
    /// session written once in its group), passed on as it came.
    One(Vec<(Bytes, Bytes)>),
    Merged(Merged),
}

/// Field writes merged, in first-write order: `Some` set, `None` removed.
#[derive(Debug, Default)]
struct Merged {
    fields: Vec<(Bytes, Option<Bytes>)>,
    /// Where each field is in `fields`, once there are many (a transaction
    /// may write thousands of attributes to one session).
    positions: Option<HashTable<usize>>,
}

impl Net {
    fn new(key: Bytes) -> Self {
        Net {
            key,
            del: false,
            fields: Fields::None,
            zset: Vec::new(),
            set: None,
            expire_at: None,
        }
    }

    /// Everything before a `DEL` (or a `SET`, which replaces the key) is moot.
    fn reset(&mut self) {
        self.del = true;
        self.fields = Fields::None;
        self.zset.clear();
        self.set = None;
        self.expire_at = None;
    }

    fn apply(&mut self, op: Op, hasher: &DefaultHashBuilder) {
        match op {
            Op::Del => self.reset(),
            Op::HSet(fields) => match &mut self.fields {
                slot @ Fields::None => *slot = Fields::One(fields),
                _ => self.write_fields(fields.into_iter().map(|(f, v)| (f, Some(v))), hasher),
            },
            Op::HDel(fields) => self.write_fields(fields.into_iter().map(|f| (f, None)), hasher),
            Op::ZAdd(members) => self.zset.extend(members),
            Op::Set(value) => {
                self.reset();
                self.set = Some(value);
            }
            Op::ExpireAt(at) => self.expire_at = Some(at),
        }
    }

    /// Writes fields in merged form, into which the fields so far are
    /// converted on the first write that needs it.
    fn write_fields(
        &mut self,
        writes: impl Iterator<Item = (Bytes, Option<Bytes>)>,
        hasher: &DefaultHashBuilder,
    ) {
        let mut merged = match std::mem::take(&mut self.fields) {
            Fields::None => Merged::default(),
            Fields::One(set) => {
                // Written one by one, in case the one `HSET` named a field twice.
                let mut merged = Merged::default();
                merged.fields.reserve(set.len());
                for (field, value) in set {
                    merged.write(field, Some(value), hasher);
                }
                merged
            }
            Fields::Merged(merged) => merged,
        };
        for (field, value) in writes {
            merged.write(field, value, hasher);
        }
        self.fields = Fields::Merged(merged);
    }

    fn emit(self, out: &mut Vec<Command>) {
        let key = self.key;
        if self.del {
            out.push(Command::Del(key.clone()));
        }
        match self.fields {
            Fields::None => {}
            Fields::One(fields) => out.push(Command::HSet {
                key: key.clone(),
                fields,
            }),
            Fields::Merged(Merged { fields, .. }) => {
                let mut set = Vec::with_capacity(fields.len());
                let mut unset = Vec::new();
                for (field, value) in fields {
                    match value {
                        Some(value) => set.push((field, value)),
                        None => unset.push(field),
                    }
                }
                // After a DEL there is nothing to remove.
                if !unset.is_empty() && !self.del {
                    out.push(Command::HDel {
                        key: key.clone(),
                        fields: unset,
                    });
                }
                if !set.is_empty() {
                    out.push(Command::HSet {
                        key: key.clone(),
                        fields: set,
                    });
                }
            }
        }
        if !self.zset.is_empty() {
            out.push(Command::ZAdd {
                key: key.clone(),
                members: self.zset,
            });
        }
        if let Some(value) = self.set {
            out.push(Command::Set {
                key: key.clone(),
                value,
            });
        }
        if let Some(at) = self.expire_at {
            out.push(Command::ExpireAt { key, at });
        }
    }
}

impl Merged {
    /// Sets (`Some`) or removes (`None`) one field. `hasher`: the same for
    /// every call (the default one is seeded anew for each instance).
    fn write(&mut self, field: Bytes, value: Option<Bytes>, hasher: &DefaultHashBuilder) {
        const FEW: usize = 16;
        let fields = &mut self.fields;
        let found = match &mut self.positions {
            None if fields.len() < FEW => fields.iter().position(|(f, _)| *f == field),
            positions => {
                let rehash =
                    |fields: &[(Bytes, Option<Bytes>)], i: usize| hasher.hash_one(&fields[i].0);
                let table = positions.get_or_insert_with(|| {
                    let mut table = HashTable::with_capacity(FEW * 2);
                    for i in 0..fields.len() {
                        table.insert_unique(rehash(fields, i), i, |&j| rehash(fields, j));
                    }
                    table
                });
                let hash = hasher.hash_one(&field);
                let found = table.find(hash, |&i| fields[i].0 == field).copied();
                if found.is_none() {
                    table.insert_unique(hash, fields.len(), |&j| rehash(fields, j));
                }
                found
            }
        };
        match found {
            Some(i) => fields[i].1 = value,
            None => fields.push((field, value)),
        }
    }
}

/// What the first pass over a group learns of one key.
struct Slot {
    /// The index of the key's first command.
    first: usize,
    /// Its `EXPIREAT` value since its last `DEL` or `SET`.
    expire_at: Option<i64>,
    /// Two different `EXPIREAT` values with no `DEL` between them: the key's
    /// commands are passed through as they came.
    expiry_changes: bool,
}

/// The commands with the same net effect inside one `MULTI`/`EXEC`: at most
/// one of each kind per key.
///
/// Two passes: the first finds each command's key (each key hashed once)
/// and the keys whose expiry changes; the second moves the commands into
/// their key's net effect, with no lookup and no key copied.
pub fn coalesce(commands: Vec<Command>) -> Vec<Command> {
    let hasher = DefaultHashBuilder::default();
    let mut slots: Vec<Slot> = Vec::with_capacity(commands.len() / 2);
    let mut slot_of: Vec<u32> = Vec::with_capacity(commands.len());
    let mut index: HashTable<u32> = HashTable::with_capacity(commands.len() / 2);
    for (i, command) in commands.iter().enumerate() {
        let key = command.key();
        let s = match index.entry(
            hasher.hash_one(key),
            |&s| commands[slots[s as usize].first].key() == key,
            |&s| hasher.hash_one(commands[slots[s as usize].first].key()),
        ) {
            Entry::Occupied(entry) => *entry.get(),
            Entry::Vacant(entry) => {
                let s = slots.len() as u32;
                entry.insert(s);
                slots.push(Slot {
                    first: i,
                    expire_at: None,
                    expiry_changes: false,
                });
                s
            }
        };
        slot_of.push(s);
        let slot = &mut slots[s as usize];
        match command {
            Command::Del(_) | Command::Set { .. } => slot.expire_at = None,
            Command::ExpireAt { at, .. } => {
                let before = slot.expire_at.replace(*at);
                slot.expiry_changes |= before.is_some_and(|before| before != *at);
            }
            _ => {}
        }
    }
    drop(index);
    let mut nets: Vec<Option<Net>> = std::iter::repeat_with(|| None).take(slots.len()).collect();
    let mut passed = Vec::new();
    for (command, s) in commands.into_iter().zip(slot_of) {
        let s = s as usize;
        if slots[s].expiry_changes {
            passed.push(command);
            continue;
        }
        let (key, op) = command.into_parts();
        nets[s]
            .get_or_insert_with(|| Net::new(key))
            .apply(op, &hasher);
    }
    let mut out = Vec::with_capacity(nets.len() * 2 + passed.len());
    for net in nets.into_iter().flatten() {
        net.emit(&mut out);
    }
    out.extend(passed);
    out
}

#[cfg(test)]
mod tests;
