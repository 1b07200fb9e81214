//! Redis key names of the model, under the configured prefix.

use super::Bytes;

/// Builds and recognises the keys of one namespace.
#[derive(Clone, Debug, Default)]
pub struct Keys {
    prefix: Bytes,
}

const SESSION: &[u8] = b"session:";
const USER: &[u8] = b"user:";
const SESSIONS_SUFFIX: &[u8] = b":sessions";
const MARKER: &[u8] = b"replicator:snapshot";

impl Keys {
    pub fn new(prefix: impl Into<Bytes>) -> Self {
        Keys {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// `{prefix}session:{session_id}`: the session hash.
    pub fn session(&self, session_id: &[u8]) -> Bytes {
        [&self.prefix[..], SESSION, session_id].concat()
    }

    /// `{prefix}user:{user_id}:sessions`: the user's index of live sessions.
    pub fn user_index(&self, user_id: i64) -> Bytes {
        let id = user_id.to_string();
        [&self.prefix[..], USER, id.as_bytes(), SESSIONS_SUFFIX].concat()
    }

    /// `{prefix}replicator:snapshot`: which snapshot the namespace belongs to.
    pub fn marker(&self) -> Bytes {
        [&self.prefix[..], MARKER].concat()
    }

    /// `SCAN MATCH` pattern of every session hash of the namespace.
    pub fn session_pattern(&self) -> Bytes {
        [&glob_escape(&self.prefix)[..], SESSION, b"*"].concat()
    }

    /// `SCAN MATCH` pattern of every user index of the namespace.
    pub fn user_index_pattern(&self) -> Bytes {
        [&glob_escape(&self.prefix)[..], USER, b"*", SESSIONS_SUFFIX].concat()
    }

    /// `SCAN MATCH` patterns of every key the model writes, the marker aside.
    pub fn model_patterns(&self) -> [Bytes; 2] {
        [self.session_pattern(), self.user_index_pattern()]
    }

    /// The session id of a session key of this namespace.
    pub fn parse_session<'k>(&self, key: &'k [u8]) -> Option<&'k [u8]> {
        key.strip_prefix(&self.prefix[..])?.strip_prefix(SESSION)
    }

    /// The user id of a user index key of this namespace.
    pub fn parse_user_index(&self, key: &[u8]) -> Option<i64> {
        let id = key
            .strip_prefix(&self.prefix[..])?
            .strip_prefix(USER)?
            .strip_suffix(SESSIONS_SUFFIX)?;
        std::str::from_utf8(id).ok()?.parse().ok()
    }
}

/// Escapes the glob metacharacters of a literal for `SCAN MATCH`.
fn glob_escape(literal: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(literal.len());
    for &b in literal {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_parses_keys() {
        let keys = Keys::new("app:");
        assert_eq!(keys.session(b"a:b c"), b"app:session:a:b c");
        assert_eq!(
            keys.parse_session(b"app:session:a:b c"),
            Some(&b"a:b c"[..])
        );
        assert_eq!(keys.parse_session(b"other:session:x"), None);
        assert_eq!(keys.user_index(42), b"app:user:42:sessions");
        assert_eq!(keys.parse_user_index(b"app:user:42:sessions"), Some(42));
        assert_eq!(keys.parse_user_index(b"app:user:x:sessions"), None);
        assert_eq!(keys.marker(), b"app:replicator:snapshot");
    }

    #[test]
    fn patterns_escape_the_prefix() {
        let keys = Keys::new("t[1]*:");
        assert_eq!(keys.session_pattern(), b"t\\[1\\]\\*:session:*");
        assert_eq!(keys.user_index_pattern(), b"t\\[1\\]\\*:user:*:sessions");
        assert_eq!(Keys::default().session_pattern(), b"session:*");
    }
}
