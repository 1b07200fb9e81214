//! `TIMESTAMP` values: UTC instants with microsecond precision.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// A MySQL `TIMESTAMP` as microseconds since the Unix epoch, UTC.
///
/// MySQL stores `TIMESTAMP` in UTC; the binlog carries epoch seconds and the
/// snapshot reads `UNIX_TIMESTAMP(column)`, so neither the server's nor the
/// session's time zone ever reaches this value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(i64);

const MICROS: i64 = 1_000_000;

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    pub fn from_parts(seconds: i64, micros: u32) -> Self {
        Timestamp(seconds * MICROS + i64::from(micros))
    }

    pub fn now() -> Self {
        Timestamp(Utc::now().timestamp_micros())
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    /// Whole Unix seconds, rounded up: the value of `EXPIREAT` and of index scores.
    pub fn ceil_seconds(self) -> i64 {
        self.0.div_euclid(MICROS) + i64::from(self.0.rem_euclid(MICROS) != 0)
    }

    /// Parses the decimal text of `UNIX_TIMESTAMP(col)`: `1700000000` or
    /// `1700000000.123456`. Zero, the value of MySQL's zero date, is `None`.
    pub fn parse_unix(text: &str) -> Option<Timestamp> {
        let (secs, frac) = match text.split_once('.') {
            Some((s, f)) => (s, f),
            None => (text, ""),
        };
        let secs: i64 = secs.parse().ok()?;
        if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let micros = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<6}").parse::<i64>().ok()?
        };
        let ts = Timestamp(secs.checked_mul(MICROS)?.checked_add(micros)?);
        (ts.0 > 0).then_some(ts)
    }

    /// RFC 3339 in UTC: `YYYY-MM-DDTHH:MM:SSZ`, or `...:SS.ffffffZ` when the
    /// fractional part is not zero.
    pub fn to_rfc3339(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(dt) = DateTime::<Utc>::from_timestamp_micros(self.0) else {
            return write!(f, "@{}us", self.0);
        };
        let precision = if self.0.rem_euclid(MICROS) == 0 {
            SecondsFormat::Secs
        } else {
            SecondsFormat::Micros
        };
        f.write_str(&dt.to_rfc3339_opts(precision, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_whole_and_fractional_seconds() {
        let whole = Timestamp::from_parts(1_700_000_000, 0);
        assert_eq!(whole.to_rfc3339(), "2023-11-14T22:13:20Z");
        let frac = Timestamp::from_parts(1_700_000_000, 120);
        assert_eq!(frac.to_rfc3339(), "2023-11-14T22:13:20.000120Z");
    }

    #[test]
    fn ceil_seconds_rounds_up_only_fractions() {
        assert_eq!(Timestamp::from_parts(10, 0).ceil_seconds(), 10);
        assert_eq!(Timestamp::from_parts(10, 1).ceil_seconds(), 11);
        assert_eq!(Timestamp::from_parts(10, 999_999).ceil_seconds(), 11);
    }

    #[test]
    fn parses_unix_timestamp_text() {
        assert_eq!(
            Timestamp::parse_unix("1700000000"),
            Some(Timestamp::from_parts(1_700_000_000, 0))
        );
        assert_eq!(
            Timestamp::parse_unix("1700000000.5"),
            Some(Timestamp::from_parts(1_700_000_000, 500_000))
        );
        assert_eq!(
            Timestamp::parse_unix("1700000000.000001"),
            Some(Timestamp::from_parts(1_700_000_000, 1))
        );
        assert_eq!(Timestamp::parse_unix("0"), None);
        assert_eq!(Timestamp::parse_unix("0.000000"), None);
        assert_eq!(Timestamp::parse_unix("abc"), None);
        assert_eq!(Timestamp::parse_unix("1.1234567"), None);
    }
}
