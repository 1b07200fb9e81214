//! Column values of the source into the model's row types.
//!
//! Both the snapshot (a `SELECT` of the columns in [`super::Table::columns`]
//! order) and the binlog (columns picked by name) hand over the values in
//! that order. `TIMESTAMP` columns arrive as Unix seconds in decimal text:
//! `UNIX_TIMESTAMP(col)` in the snapshot, the binlog's own encoding in rows
//! events.

use mysql_async::Value;

use crate::error::{Error, Result};
use crate::model::{Attribute, Bytes, Preferences, Session, SourceRow, Table, Timestamp, User};

/// Reads the columns of a row in order, naming the table and column on error.
struct Columns {
    table: &'static str,
    values: std::vec::IntoIter<Value>,
}

impl Columns {
    fn new(table: &'static str, values: Vec<Value>) -> Self {
        Columns {
            table,
            values: values.into_iter(),
        }
    }

    fn next(&mut self, column: &str) -> Result<Value> {
        self.values
            .next()
            .ok_or_else(|| Error::decode(self.table, format!("column `{column}` is missing")))
    }

    fn bytes(&mut self, column: &str) -> Result<Option<Bytes>> {
        let value = self.next(column)?;
        text(value).map_err(|what| Error::decode(self.table, format!("column `{column}`: {what}")))
    }

    fn required_bytes(&mut self, column: &str) -> Result<Bytes> {
        self.bytes(column)?
            .ok_or_else(|| Error::decode(self.table, format!("column `{column}` is NULL")))
    }

    fn int(&mut self, column: &str) -> Result<i64> {
        let value = self.next(column)?;
        integer(&value).ok_or_else(|| {
            Error::decode(
                self.table,
                format!("column `{column}` is not an integer: {value:?}"),
            )
        })
    }

    fn boolean(&mut self, column: &str) -> Result<Option<bool>> {
        match self.next(column)? {
            Value::NULL => Ok(None),
            value => integer(&value).map(|i| Some(i != 0)).ok_or_else(|| {
                Error::decode(
                    self.table,
                    format!("column `{column}` is not a boolean: {value:?}"),
                )
            }),
        }
    }

    /// `UNIX_TIMESTAMP(column)` as decimal text; zero (the zero date) is `None`.
    fn unix_timestamp(&mut self, column: &str) -> Result<Option<Timestamp>> {
        Ok(self
            .bytes(column)?
            .and_then(|b| std::str::from_utf8(&b).ok().and_then(Timestamp::parse_unix)))
    }
}

fn text(value: Value) -> std::result::Result<Option<Bytes>, String> {
    match value {
        Value::NULL => Ok(None),
        Value::Bytes(b) => Ok(Some(b)),
        Value::Int(i) => Ok(Some(i.to_string().into_bytes())),
        Value::UInt(u) => Ok(Some(u.to_string().into_bytes())),
        other => Err(format!("unexpected value {other:?}")),
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Int(i) => Some(*i),
        Value::UInt(u) => i64::try_from(*u).ok(),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        _ => None,
    }
}

pub fn user(row: Vec<Value>) -> Result<SourceRow> {
    let mut c = Columns::new(Table::Users.name(), row);
    Ok(SourceRow::User(User {
        user_id: c.int("user_id")?,
        username: c.required_bytes("username")?,
        email: c.required_bytes("email")?,
    }))
}

pub fn preferences(row: Vec<Value>) -> Result<SourceRow> {
    let mut c = Columns::new(Table::Preferences.name(), row);
    Ok(SourceRow::Preferences(Preferences {
        user_id: c.int("user_id")?,
        theme: c.bytes("theme")?,
        language: c.bytes("language")?,
        notifications_enabled: c.boolean("notifications_enabled")?,
    }))
}

pub fn session(row: Vec<Value>) -> Result<SourceRow> {
    let mut c = Columns::new(Table::Sessions.name(), row);
    let session = Session {
        session_id: c.required_bytes("session_id")?,
        user_id: c.int("user_id")?,
        ip_address: c.bytes("ip_address")?,
        user_agent: c.bytes("user_agent")?,
        created_at: c.unix_timestamp("created_at")?,
        expires_at: c.unix_timestamp("expires_at")?,
        last_activity_at: c.unix_timestamp("last_activity_at")?,
    };
    if session.expires_at.is_none() {
        tracing::warn!(
            session_id = %String::from_utf8_lossy(&session.session_id),
            "user_sessions.expires_at is a zero or unreadable date: the session is treated as expired"
        );
    }
    Ok(SourceRow::Session(session))
}

pub fn attribute(row: Vec<Value>) -> Result<SourceRow> {
    let mut c = Columns::new(Table::Attributes.name(), row);
    Ok(SourceRow::Attribute(Attribute {
        session_id: c.required_bytes("session_id")?,
        key: c.required_bytes("attribute_key")?,
        value: c.bytes("attribute_value")?,
    }))
}
