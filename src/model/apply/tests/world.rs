//! The test bench of the apply rules: an in-memory state, an in-memory
//! Redis that runs the model's commands, and a world that applies groups to
//! both and checks after each that Redis equals the model of the state.

use std::collections::{BTreeMap, HashMap};

use super::super::*;
use crate::model::{Bytes, Content, Overlay};
use crate::position::BinlogPosition;

pub(super) type Mem = crate::testing::MemState;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Val {
    Hash(BTreeMap<Bytes, Bytes>),
    ZSet(BTreeMap<Bytes, i64>),
}

#[derive(Default, Debug, PartialEq)]
pub(super) struct Redis {
    pub(super) data: HashMap<Bytes, Val>,
    pub(super) ttl: HashMap<Bytes, i64>,
}

impl Redis {
    pub(super) fn exec(&mut self, cmds: &[Command], now: i64) {
        for c in cmds {
            match c.clone() {
                Command::Del(k) => {
                    self.data.remove(&k);
                    self.ttl.remove(&k);
                }
                Command::HSet { key, fields } => {
                    let e = self.data.entry(key).or_insert(Val::Hash(BTreeMap::new()));
                    let Val::Hash(h) = e else {
                        panic!("wrong type")
                    };
                    h.extend(fields);
                }
                Command::HDel { key, fields } => {
                    if let Some(Val::Hash(h)) = self.data.get_mut(&key) {
                        fields.iter().for_each(|f| {
                            h.remove(f);
                        });
                        if h.is_empty() {
                            self.data.remove(&key);
                            self.ttl.remove(&key);
                        }
                    }
                }
                Command::ExpireAt { key, at } => {
                    if self.data.contains_key(&key) {
                        if at <= now {
                            self.data.remove(&key);
                            self.ttl.remove(&key);
                        } else {
                            self.ttl.insert(key, at);
                        }
                    }
                }
                Command::ZAdd { key, members } => {
                    let e = self.data.entry(key).or_insert(Val::ZSet(BTreeMap::new()));
                    let Val::ZSet(z) = e else {
                        panic!("wrong type")
                    };
                    for (s, m) in members {
                        z.insert(m, s);
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// The model of the state, as a fresh Redis.
    pub(super) fn model_of(state: &Mem, keys: &Keys, now: Timestamp) -> Redis {
        let mut r = Redis::default();
        let mut cmds = Vec::new();
        let mut by_user: BTreeMap<i64, Vec<(i64, Bytes)>> = BTreeMap::new();
        for s in state.sessions.values() {
            let attrs = state.attributes(&s.session_id).unwrap();
            if let Some(c) = write_session(
                keys,
                now,
                s,
                state.users.get(&s.user_id),
                state.preferences.get(&s.user_id),
                &attrs,
            ) {
                cmds.extend(c);
                by_user
                    .entry(s.user_id)
                    .or_default()
                    .push((s.expire_at_seconds().unwrap(), s.session_id.clone()));
            }
        }
        for (u, m) in by_user {
            cmds.extend(write_user_index(keys, u, m));
        }
        r.exec(&cmds, now.ceil_seconds());
        r
    }
}

pub(super) const NOW: i64 = 1_800_000_000;

pub(super) fn now() -> Timestamp {
    Timestamp::from_parts(NOW, 0)
}

pub(super) fn user(id: i64, name: &str) -> SourceRow {
    SourceRow::User(User {
        user_id: id,
        username: name.into(),
        email: format!("{name}@x").into(),
    })
}

pub(super) fn prefs(id: i64, theme: Option<&str>) -> SourceRow {
    SourceRow::Preferences(Preferences {
        user_id: id,
        theme: theme.map(Into::into),
        language: Some(b"en".to_vec()),
        notifications_enabled: Some(true),
    })
}

pub(super) fn session(id: &str, user_id: i64, expires_in: i64) -> SourceRow {
    SourceRow::Session(Session {
        session_id: id.into(),
        user_id,
        ip_address: Some(b"192.0.2.1".to_vec()),
        user_agent: None,
        created_at: Some(Timestamp::from_parts(NOW - 100, 0)),
        expires_at: Some(Timestamp::from_parts(NOW + expires_in, 0)),
        last_activity_at: None,
    })
}

pub(super) fn attr(sid: &str, key: &str, value: Option<&str>) -> SourceRow {
    SourceRow::Attribute(Attribute {
        session_id: sid.into(),
        key: key.into(),
        value: value.map(Into::into),
    })
}

pub(super) struct World {
    pub(super) state: Mem,
    pub(super) redis: Redis,
    pub(super) keys: Keys,
    /// Build each group while the one before is in flight (its writes not
    /// yet committed to the state), as streaming does.
    pub(super) pipelined: bool,
    pub(super) in_flight: Option<crate::model::Pending>,
}

impl World {
    pub(super) fn new() -> Self {
        World {
            state: Mem::default(),
            redis: Redis::default(),
            keys: Keys::new("p:"),
            pipelined: false,
            in_flight: None,
        }
    }

    pub(super) fn pipelined() -> Self {
        World {
            pipelined: true,
            ..World::new()
        }
    }

    /// Applies one group and checks Redis equals the model of the state.
    pub(super) fn group(&mut self, changes: Vec<RowChange>) -> Vec<Command> {
        self.pieces(vec![Content::Rows(changes)])
    }

    /// Applies one group of pieces, as [`Self::group`] does.
    pub(super) fn pieces(&mut self, pieces: Vec<Content>) -> Vec<Command> {
        let base = self.state.clone();
        let mut overlay = Overlay::over(&base, self.in_flight.as_ref());
        let mut out = GroupOutput::default();
        let at = BinlogPosition::parse("binlog.000001", 4).unwrap();
        for content in pieces {
            // As streaming does: the attributes' sessions read first, in a batch.
            if let Content::Rows(changes) = &content {
                prefetch(changes, &overlay).unwrap();
            }
            apply_content(content, &mut overlay, &self.keys, now(), &mut out, &at).unwrap();
        }
        finish_group(&overlay, &self.keys, now(), &mut out).unwrap();
        let pending = overlay.pending;
        // The group before is acknowledged, and committed, only now.
        if let Some(before) = self.in_flight.take() {
            self.state.commit(&before);
        }
        self.redis.exec(&out.commands, NOW);
        let mut expected = self.state.clone();
        expected.commit(&pending);
        assert_eq!(
            self.redis,
            Redis::model_of(&expected, &self.keys, now()),
            "after {:?}",
            out.commands
        );
        match self.pipelined {
            true => self.in_flight = Some(pending),
            false => self.state = expected,
        }
        out.commands
    }

    /// The state with the group in flight committed.
    pub(super) fn settled(&self) -> Mem {
        let mut state = self.state.clone();
        if let Some(p) = &self.in_flight {
            state.commit(p);
        }
        state
    }

    pub(super) fn hash(&self, sid: &str) -> Option<BTreeMap<String, String>> {
        match self.redis.data.get(&self.keys.session(sid.as_bytes()))? {
            Val::Hash(h) => Some(
                h.iter()
                    .map(|(k, v)| {
                        (
                            String::from_utf8_lossy(k).into(),
                            String::from_utf8_lossy(v).into(),
                        )
                    })
                    .collect(),
            ),
            _ => None,
        }
    }
}

/// Runs each case twice: each group applied at once, and each group built
/// while the one before is in flight (as streaming does).
macro_rules! one_by_one_and_in_flight {
    ($($name:ident),*) => {$(
        mod $name {
            #[test]
            fn one_by_one() {
                super::$name(super::World::new())
            }

            #[test]
            fn in_flight() {
                super::$name(super::World::pipelined())
            }
        }
    )*};
}

pub(super) use one_by_one_and_in_flight;
