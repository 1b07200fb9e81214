//! Typed rows of the four source tables, as the model needs them.
//!
//! Text is kept as bytes, exactly as stored: the model writes it to Redis
//! unchanged.

use serde::{Deserialize, Serialize};

use super::Timestamp;

/// Raw bytes of a text or blob column.
pub type Bytes = Vec<u8>;

/// A `users` row (the columns the model reads).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub user_id: i64,
    pub username: Bytes,
    pub email: Bytes,
}

/// A `user_preferences` row (one per user at most).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {
    pub user_id: i64,
    pub theme: Option<Bytes>,
    pub language: Option<Bytes>,
    pub notifications_enabled: Option<bool>,
}

/// A `user_sessions` row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub session_id: Bytes,
    pub user_id: i64,
    pub ip_address: Option<Bytes>,
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
    pub session_id: Bytes,
    pub key: Bytes,
    pub value: Option<Bytes>,
}
