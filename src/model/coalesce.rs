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
use hashbrown::{DefaultHashBuilder, HashMap, HashSet, HashTable};

use super::command::Op;
use super::{Bytes, Command};

/// The net effect of a run of commands on one key.
#[derive(Debug)]
struct Net {
    key: Bytes,
    /// The key is deleted first.
    del: bool,
    /// Hash fields, in first-write order: `Some` set, `None` removed.
    fields: Vec<(Bytes, Option<Bytes>)>,
    /// Where each field is in `fields`, once there are many (a transaction
    /// may write thousands of attributes to one session).
    positions: Option<HashTable<usize>>,
    zset: Vec<(i64, Bytes)>,
    set: Option<Bytes>,
    expire_at: Option<i64>,
}

impl Net {
    fn new(key: Bytes) -> Self {
        Net {
            key,
            del: false,
            fields: Vec::new(),
            positions: None,
            zset: Vec::new(),
            set: None,
            expire_at: None,
        }
    }

    /// Everything before a `DEL` (or a `SET`, which replaces the key) is moot.
    fn reset(&mut self) {
        self.del = true;
        self.fields.clear();
        self.positions = None;
        self.zset.clear();
        self.set = None;
        self.expire_at = None;
    }

    fn apply(&mut self, op: Op, hasher: &DefaultHashBuilder) {
        match op {
            Op::Del => self.reset(),
            Op::HSet(fields) => self.hset(fields, hasher),
            Op::HDel(fields) => self.hdel(fields, hasher),
            Op::ZAdd(members) => self.zset.extend(members),
            Op::Set(value) => {
                self.reset();
                self.set = Some(value);
            }
            Op::ExpireAt(at) => self.expire_at = Some(at),
        }
    }

    fn hset(&mut self, fields: Vec<(Bytes, Bytes)>, hasher: &DefaultHashBuilder) {
        for (field, value) in fields {
            self.write_field(field, Some(value), hasher);
        }
    }

    fn hdel(&mut self, fields: Vec<Bytes>, hasher: &DefaultHashBuilder) {
        for field in fields {
            self.write_field(field, None, hasher);
        }
    }

    /// `hasher`: the same for every call (the default one is seeded anew
    /// for each instance).
    fn write_field(&mut self, field: Bytes, value: Option<Bytes>, hasher: &DefaultHashBuilder) {
        const FEW: usize = 16;
        let found = match &mut self.positions {
            None if self.fields.len() < FEW => self.fields.iter().position(|(f, _)| *f == field),
            positions => {
                let fields = &self.fields;
                let rehash = |&i: &usize| hasher.hash_one(&fields[i].0);
                let table = positions.get_or_insert_with(|| {
                    let mut table = HashTable::with_capacity(FEW * 2);
                    for i in 0..fields.len() {
                        table.insert_unique(rehash(&i), i, rehash);
                    }
                    table
                });
                let hash = hasher.hash_one(&field);
                let found = table.find(hash, |&i| fields[i].0 == field).copied();
                if found.is_none() {
                    table.insert_unique(hash, fields.len(), rehash);
                }
                found
            }
        };
        match found {
            Some(i) => self.fields[i].1 = value,
            None => self.fields.push((field, value)),
        }
    }

    fn emit(self, out: &mut Vec<Command>) {
        let key = self.key;
        if self.del {
            out.push(Command::Del(key.clone()));
        }
        let (set, unset): (Vec<_>, Vec<_>) =
            self.fields.into_iter().partition(|(_, v)| v.is_some());
        // After a DEL there is nothing to remove.
        if !unset.is_empty() && !self.del {
            out.push(Command::HDel {
                key: key.clone(),
                fields: unset.into_iter().map(|(f, _)| f).collect(),
            });
        }
        if !set.is_empty() {
            out.push(Command::HSet {
                key: key.clone(),
                fields: set.into_iter().filter_map(|(f, v)| Some((f, v?))).collect(),
            });
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

/// The commands with the same net effect inside one `MULTI`/`EXEC`: at most
/// one of each kind per key.
pub fn coalesce(commands: Vec<Command>) -> Vec<Command> {
    let unmerged = keys_with_changing_expiry(&commands);
    let mut nets: Vec<Net> = Vec::with_capacity(commands.len() / 2);
    let mut passed = Vec::new();
    // Each key's entry in `nets`, found by the key's hash: no key is copied.
    let hasher = DefaultHashBuilder::default();
    let mut index: HashTable<usize> = HashTable::with_capacity(commands.len() / 2);
    for command in commands {
        if !unmerged.is_empty() && unmerged.contains(command.key()) {
            passed.push(command);
            continue;
        }
        let (key, op) = command.into_parts();
        let hash = hasher.hash_one(&key);
        let i = match index.entry(
            hash,
            |&i| nets[i].key == key,
            |&i| hasher.hash_one(&nets[i].key),
        ) {
            Entry::Occupied(entry) => *entry.get(),
            Entry::Vacant(entry) => {
                entry.insert(nets.len());
                nets.push(Net::new(key));
                nets.len() - 1
            }
        };
        nets[i].apply(op, &hasher);
    }
    let mut out = Vec::with_capacity(nets.len() * 2 + passed.len());
    for net in nets {
        net.emit(&mut out);
    }
    out.extend(passed);
    out
}

/// Keys given two different `EXPIREAT` values with no `DEL` between them.
fn keys_with_changing_expiry(commands: &[Command]) -> HashSet<Bytes> {
    let mut expiry: HashMap<&[u8], i64> = HashMap::with_capacity(commands.len() / 2);
    let mut changing = HashSet::new();
    for command in commands {
        match command {
            Command::Del(key) | Command::Set { key, .. } => {
                expiry.remove(key.as_slice());
            }
            Command::ExpireAt { key, at }
                if expiry.insert(key, *at).is_some_and(|before| before != *at) =>
            {
                changing.insert(key.clone());
            }
            _ => {}
        }
    }
    changing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hset(key: &str, fields: &[(&str, &str)]) -> Command {
        Command::HSet {
            key: key.into(),
            fields: fields
                .iter()
                .map(|(f, v)| ((*f).into(), (*v).into()))
                .collect(),
        }
    }

    fn hdel(key: &str, fields: &[&str]) -> Command {
        Command::HDel {
            key: key.into(),
            fields: fields.iter().map(|f| f.as_bytes().to_vec()).collect(),
        }
    }

    fn expire(key: &str, at: i64) -> Command {
        Command::ExpireAt {
            key: key.into(),
            at,
        }
    }

    #[test]
    fn writes_to_one_hash_become_one_hset_and_one_expireat() {
        let out = coalesce(vec![
            hset("s1", &[("email", "a@x")]),
            expire("s1", 100),
            hset("s2", &[("theme", "dark")]),
            expire("s2", 200),
            hset("s1", &[("theme", "light"), ("email", "b@x")]),
            expire("s1", 100),
        ]);
        assert_eq!(
            out,
            vec![
                hset("s1", &[("email", "b@x"), ("theme", "light")]),
                expire("s1", 100),
                hset("s2", &[("theme", "dark")]),
                expire("s2", 200),
            ]
        );
    }

    #[test]
    fn a_del_drops_what_came_before_it() {
        let out = coalesce(vec![
            hset("s1", &[("email", "a@x")]),
            expire("s1", 100),
            Command::Del("s1".into()),
            hset("s1", &[("user_id", "7")]),
            hdel("s1", &["user_id", "never_set"]),
            hset("s1", &[("email", "c@x")]),
            expire("s1", 100),
        ]);
        assert_eq!(
            out,
            vec![
                Command::Del("s1".into()),
                hset("s1", &[("email", "c@x")]),
                expire("s1", 100),
            ]
        );
    }

    #[test]
    fn the_last_write_of_a_field_wins() {
        let out = coalesce(vec![
            hset("s1", &[("attr_a", "1")]),
            expire("s1", 100),
            hdel("s1", &["attr_a"]),
            hdel("s1", &["attr_b"]),
            hset("s1", &[("attr_b", "2")]),
            expire("s1", 100),
        ]);
        assert_eq!(
            out,
            vec![
                hdel("s1", &["attr_a"]),
                hset("s1", &[("attr_b", "2")]),
                expire("s1", 100)
            ]
        );
    }

    #[test]
    fn thousands_of_fields_on_one_hash() {
        let name = |i: usize| format!("attr_{i}");
        let mut cmds = Vec::new();
        for i in 0..3_000 {
            cmds.push(hset("s1", &[(&name(i), "v")]));
            cmds.push(expire("s1", 100));
        }
        cmds.push(hdel(
            "s1",
            &(0..3_000)
                .step_by(2)
                .map(|i| &*name(i).leak())
                .collect::<Vec<_>>(),
        ));
        cmds.push(hset("s1", &[(&name(0), "again")]));
        cmds.push(expire("s1", 100));
        let out = coalesce(cmds);
        let [Command::HDel {
            fields: removed, ..
        }, Command::HSet { fields: set, .. }, Command::ExpireAt { .. }] = &out[..]
        else {
            panic!("{out:?}")
        };
        assert_eq!(removed.len(), 1_499);
        assert_eq!(set.len(), 1_501);
        assert_eq!(set[0], (name(0).into_bytes(), b"again".to_vec()));
    }

    #[test]
    fn a_key_whose_expiry_changes_is_passed_through() {
        let cmds = vec![
            hset("s1", &[("a", "1")]),
            expire("s1", 100),
            hset("s1", &[("b", "2")]),
            expire("s1", 300),
        ];
        assert_eq!(coalesce(cmds.clone()), cmds);
    }

    #[test]
    fn an_index_rewrite_keeps_its_shape() {
        let cmds = vec![
            Command::Del("u:1".into()),
            Command::ZAdd {
                key: "u:1".into(),
                members: vec![(100, "s1".into()), (200, "s2".into())],
            },
            expire("u:1", 200),
        ];
        assert_eq!(coalesce(cmds.clone()), cmds);
    }
}
