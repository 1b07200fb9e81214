//! Typed rows of the four source tables, as the model needs them.
//!
//! Text is kept as bytes, exactly as stored: the model writes it to Redis
//! unchanged.

use serde::{Deserialize, Serialize};

use super::Timestamp;

/// Raw bytes of a text or blob column. Rows store them with
/// `serde_bytes`: the same bytes in the state as a sequence of `u8` would
/// give (postcard writes both as a length and the bytes), written and read
/// in one piece instead of byte by byte.
pub type Bytes = Vec<u8>;

/// A `users` row (the columns the model reads).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub user_id: i64,
    #[serde(with = "serde_bytes")]
    pub username: Bytes,
    #[serde(with = "serde_bytes")]
    pub email: Bytes,
}

/// A `user_preferences` row (one per user at most).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {
    pub user_id: i64,
    #[serde(with = "serde_bytes")]
    pub theme: Option<Bytes>,
    #[serde(with = "serde_bytes")]
    pub language: Option<Bytes>,
    pub notifications_enabled: Option<bool>,
}

/// A `user_sessions` row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    #[serde(with = "serde_bytes")]
    pub session_id: Bytes,
    pub user_id: i64,
    #[serde(with = "serde_bytes")]
    pub ip_address: Option<Bytes>,
    #[serde(with = "serde_bytes")]
    pub user_agent: Option<Bytes>,
    pub created_at: Option<Timestamp>,
    /// `None` for a zero or unreadable `expires_at`: such a session is expired.
    pub expires_at: Option<Timestamp>,
    pub last_activity_at: Option<Timestamp>,
}

impl Session {
    /// A session is live, and has a hash in Redis, while `expires_at` is in the future.
    pub fn is_live(&self, now: Timestamp) -> bool {
        is_live(self.expires_at, now)
    }

    /// The `EXPIREAT` of its hash and its score in the user's index.
    pub fn expire_at_seconds(&self) -> Option<i64> {
        expire_at_seconds(self.expires_at)
    }
}

/// The one rule of liveness, for a session and for its index entry.
fn is_live(expires_at: Option<Timestamp>, now: Timestamp) -> bool {
    expires_at.is_some_and(|e| e > now)
}

/// Whole Unix seconds, rounded up.
fn expire_at_seconds(expires_at: Option<Timestamp>) -> Option<i64> {
    expires_at.map(Timestamp::ceil_seconds)
}

/// A session as the user → sessions index knows it: its id and expiry,
/// enough to tell whether it is live without reading the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRef {
    pub session_id: Bytes,
    pub expires_at: Option<Timestamp>,
}

impl SessionRef {
    pub fn is_live(&self, now: Timestamp) -> bool {
        is_live(self.expires_at, now)
    }

    pub fn expire_at_seconds(&self) -> Option<i64> {
        expire_at_seconds(self.expires_at)
    }
}

impl From<&Session> for SessionRef {
    fn from(s: &Session) -> Self {
        SessionRef {
            session_id: s.session_id.clone(),
            expires_at: s.expires_at,
        }
    }
}

/// A `session_data` row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribute {
    #[serde(with = "serde_bytes")]
    pub session_id: Bytes,
    #[serde(with = "serde_bytes")]
    pub key: Bytes,
    #[serde(with = "serde_bytes")]
    pub value: Option<Bytes>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rows as they were stored before `serde_bytes`: bytes as
    /// sequences of `u8`.
    #[derive(Serialize)]
    struct SessionBefore {
        session_id: Vec<u8>,
        user_id: i64,
        ip_address: Option<Vec<u8>>,
        user_agent: Option<Vec<u8>>,
        created_at: Option<Timestamp>,
        expires_at: Option<Timestamp>,
        last_activity_at: Option<Timestamp>,
    }

    #[derive(Serialize)]
    struct AttributeBefore {
        session_id: Vec<u8>,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    }

    #[test]
    fn rows_are_stored_as_before_and_read_back() {
        let long = vec![b'x'; 300]; // a length of two varint bytes
        let session = Session {
            session_id: b"s-1".to_vec(),
            user_id: 7,
            ip_address: None,
            user_agent: Some(long.clone()),
            created_at: Some(Timestamp::from_parts(1_700_000_000, 5)),
            expires_at: None,
            last_activity_at: Some(Timestamp::from_parts(1_700_000_001, 0)),
        };
        let before = SessionBefore {
            session_id: session.session_id.clone(),
            user_id: 7,
            ip_address: None,
            user_agent: Some(long.clone()),
            created_at: session.created_at,
            expires_at: None,
            last_activity_at: session.last_activity_at,
        };
        let stored = postcard::to_stdvec(&session).unwrap();
        assert_eq!(stored, postcard::to_stdvec(&before).unwrap());
        assert_eq!(postcard::from_bytes::<Session>(&stored).unwrap(), session);

        let attr = Attribute {
            session_id: b"s-1".to_vec(),
            key: b"cart".to_vec(),
            value: Some(long.clone()),
        };
        let before = AttributeBefore {
            session_id: attr.session_id.clone(),
            key: attr.key.clone(),
            value: Some(long),
        };
        let stored = postcard::to_stdvec(&attr).unwrap();
        assert_eq!(stored, postcard::to_stdvec(&before).unwrap());
        assert_eq!(postcard::from_bytes::<Attribute>(&stored).unwrap(), attr);
    }
}
