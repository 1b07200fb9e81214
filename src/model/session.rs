//! The session hash: which field comes from which column, in which format.

use super::{Attribute, Bytes, Command, Keys, Preferences, Session, Timestamp, User};

/// One field of a session hash: its name, and its value or `None` when the
/// field is absent (a NULL column, or a source row that does not exist).
pub type Field = (&'static str, Option<Bytes>);

/// Prefix of the field of a `session_data` attribute.
const ATTR_PREFIX: &[u8] = b"attr_";

/// `username`, `email`: from the session's user.
pub fn user_fields(user: Option<&User>) -> [Field; 2] {
    [
        ("username", user.map(|u| u.username.clone())),
        ("email", user.map(|u| u.email.clone())),
    ]
}

/// `theme`, `language`, `notifications_enabled`: from the user's preferences.
pub fn preference_fields(prefs: Option<&Preferences>) -> [Field; 3] {
    [
        ("theme", prefs.and_then(|p| p.theme.clone())),
        ("language", prefs.and_then(|p| p.language.clone())),
        (
            "notifications_enabled",
            prefs.and_then(|p| p.notifications_enabled).map(|on| {
                if on {
                    b"true".to_vec()
                } else {
                    b"false".to_vec()
                }
            }),
        ),
    ]
}

/// The fields that come from the `user_sessions` row itself.
pub fn session_fields(session: &Session) -> [Field; 6] {
    let ts = |t: Option<Timestamp>| t.map(|t| t.to_rfc3339().into_bytes());
    [
        ("user_id", Some(session.user_id.to_string().into_bytes())),
        ("ip_address", session.ip_address.clone()),
        ("user_agent", session.user_agent.clone()),
        ("session_created_at", ts(session.created_at)),
        ("last_activity_at", ts(session.last_activity_at)),
        ("expires_at", ts(session.expires_at)),
    ]
}

/// The field name and value of one attribute: `attr_{attribute_key}`.
pub fn attribute_field(attr: &Attribute) -> (Bytes, Option<Bytes>) {
    ([ATTR_PREFIX, &attr.key[..]].concat(), attr.value.clone())
}

/// Every present field of a session's hash, in a stable order.
pub fn session_hash<'a>(
    session: &Session,
    user: Option<&User>,
    prefs: Option<&Preferences>,
    attributes: impl IntoIterator<Item = &'a Attribute>,
) -> Vec<(Bytes, Bytes)> {
    let fixed = session_fields(session)
        .into_iter()
        .chain(user_fields(user))
        .chain(preference_fields(prefs))
        .filter_map(|(name, value)| Some((name.as_bytes().to_vec(), value?)));
    let attrs = attributes
        .into_iter()
        .filter_map(|a| match attribute_field(a) {
            (name, Some(value)) => Some((name, value)),
            (_, None) => None,
        });
    fixed.chain(attrs).collect()
}

/// Writes a live session's whole hash, replacing whatever the key held, with
/// its TTL. `None` when the session is not live: it has no hash then.
pub fn write_session<'a>(
    keys: &Keys,
    now: Timestamp,
    session: &Session,
    user: Option<&User>,
    prefs: Option<&Preferences>,
    attributes: impl IntoIterator<Item = &'a Attribute>,
) -> Option<[Command; 3]> {
    if !session.is_live(now) {
        return None;
    }
    let at = session.expire_at_seconds()?;
    let key = keys.session(&session.session_id);
    let fields = session_hash(session, user, prefs, attributes);
    Some([
        Command::Del(key.clone()),
        Command::HSet {
            key: key.clone(),
            fields,
        },
        Command::ExpireAt { key, at },
    ])
}

/// Writes a user's whole index from `(expire_at_seconds, session_id)` of
/// their live sessions, replacing what the key held; the key's TTL is the
/// largest score. With no members the index is deleted.
pub fn write_user_index(keys: &Keys, user_id: i64, members: Vec<(i64, Bytes)>) -> Vec<Command> {
    let key = keys.user_index(user_id);
    let Some(at) = members.iter().map(|(score, _)| *score).max() else {
        return vec![Command::Del(key)];
    };
    vec![
        Command::Del(key.clone()),
        Command::ZAdd {
            key: key.clone(),
            members,
        },
        Command::ExpireAt { key, at },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: i64, micros: u32) -> Option<Timestamp> {
        Some(Timestamp::from_parts(secs, micros))
    }

    fn session() -> Session {
        Session {
            session_id: b"s1".to_vec(),
            user_id: 7,
            ip_address: Some(b"192.0.2.1".to_vec()),
            user_agent: None,
            created_at: ts(1_700_000_000, 0),
            expires_at: ts(1_700_003_600, 250_000),
            last_activity_at: None,
        }
    }

    fn as_text(fields: &[(Bytes, Bytes)]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn full_hash_has_every_present_field_and_no_other() {
        let user = User {
            user_id: 7,
            username: b"zo\xc3\xab".to_vec(),
            email: b"z@example.com".to_vec(),
        };
        let prefs = Preferences {
            user_id: 7,
            theme: None,
            language: Some(b"de".to_vec()),
            notifications_enabled: Some(false),
        };
        let attrs = [
            Attribute {
                session_id: b"s1".to_vec(),
                key: b"cart".to_vec(),
                value: Some(b"{}".to_vec()),
            },
            Attribute {
                session_id: b"s1".to_vec(),
                key: b"gone".to_vec(),
                value: None,
            },
            Attribute {
                session_id: b"s1".to_vec(),
                key: b"empty".to_vec(),
                value: Some(Vec::new()),
            },
        ];
        let hash = as_text(&session_hash(&session(), Some(&user), Some(&prefs), &attrs));
        let expected: Vec<(String, String)> = [
            ("user_id", "7"),
            ("ip_address", "192.0.2.1"),
            ("session_created_at", "2023-11-14T22:13:20Z"),
            ("expires_at", "2023-11-14T23:13:20.250000Z"),
            ("username", "zoë"),
            ("email", "z@example.com"),
            ("language", "de"),
            ("notifications_enabled", "false"),
            ("attr_cart", "{}"),
            ("attr_empty", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(hash, expected);
    }

    #[test]
    fn missing_user_and_preferences_leave_their_fields_absent() {
        let hash = as_text(&session_hash(&session(), None, None, []));
        let names: Vec<_> = hash.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["user_id", "ip_address", "session_created_at", "expires_at"]
        );
    }

    #[test]
    fn write_session_sets_ttl_rounded_up_and_skips_expired() {
        let keys = Keys::new("p:");
        let s = session();
        let now = Timestamp::from_parts(1_700_000_000, 0);
        let cmds = write_session(&keys, now, &s, None, None, []).unwrap();
        assert_eq!(cmds[0], Command::Del(b"p:session:s1".to_vec()));
        assert_eq!(
            cmds[2],
            Command::ExpireAt {
                key: b"p:session:s1".to_vec(),
                at: 1_700_003_601
            }
        );
        let later = Timestamp::from_parts(1_700_003_601, 0);
        assert!(write_session(&keys, later, &s, None, None, []).is_none());
        let zero = Session {
            expires_at: None,
            ..session()
        };
        assert!(write_session(&keys, now, &zero, None, None, []).is_none());
    }

    #[test]
    fn user_index_ttl_is_the_largest_score() {
        let keys = Keys::default();
        let cmds = write_user_index(&keys, 3, vec![(20, b"a".to_vec()), (30, b"b".to_vec())]);
        assert_eq!(
            cmds[2],
            Command::ExpireAt {
                key: b"user:3:sessions".to_vec(),
                at: 30
            }
        );
        assert_eq!(
            write_user_index(&keys, 3, vec![]),
            vec![Command::Del(b"user:3:sessions".to_vec())]
        );
    }
}
