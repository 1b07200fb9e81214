//! The binlog position as a value type.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A position in the source's binary log: the file and the byte offset of the
/// next event to read, plus the GTID position where the server has one.
///
/// Positions order by file sequence number (the numeric extension of the
/// binlog file name), then by offset. The GTID is carried along but takes no
/// part in the order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BinlogPosition {
    pub file: String,
    pub offset: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
}

impl BinlogPosition {
    pub fn new(file: impl Into<String>, offset: u64) -> Self {
        BinlogPosition {
            file: file.into(),
            offset,
            gtid: None,
        }
    }

    pub fn with_gtid(mut self, gtid: Option<String>) -> Self {
        self.gtid = gtid.filter(|g| !g.is_empty());
        self
    }

    /// The numeric extension of the file name (`binlog.000042` → 42).
    pub fn sequence(&self) -> u64 {
        self.file
            .rsplit_once('.')
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(0)
    }
}

impl PartialEq for BinlogPosition {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for BinlogPosition {}

impl PartialOrd for BinlogPosition {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for BinlogPosition {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sequence()
            .cmp(&other.sequence())
            .then_with(|| self.file.cmp(&other.file))
            .then_with(|| self.offset.cmp(&other.offset))
    }
}

impl fmt::Display for BinlogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.offset)?;
        if let Some(gtid) = &self.gtid {
            write!(f, " (gtid {gtid})")?;
        }
        Ok(())
    }
}

/// Parses `file:offset`, the form printed by `Display` without the GTID.
impl FromStr for BinlogPosition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (file, offset) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("binlog position `{s}` is not of the form FILE:OFFSET"))?;
        let offset = offset
            .trim()
            .parse()
            .map_err(|_| format!("binlog position `{s}`: offset `{offset}` is not a number"))?;
        if file.is_empty() {
            return Err(format!("binlog position `{s}` has no file name"));
        }
        Ok(BinlogPosition::new(file, offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_file_sequence_then_offset() {
        let a = BinlogPosition::new("binlog.000009", 900);
        let b = BinlogPosition::new("binlog.000010", 4);
        let c = BinlogPosition::new("binlog.000010", 120);
        assert!(a < b && b < c);
        assert_eq!(c.clone().with_gtid(Some("0-1-5".into())), c);
    }

    #[test]
    fn display_and_parse_round_trip() {
        let p = BinlogPosition::new("mysql-bin.000003", 1234);
        assert_eq!(p.to_string(), "mysql-bin.000003:1234");
        assert_eq!(
            "mysql-bin.000003:1234".parse::<BinlogPosition>().unwrap(),
            p
        );
        assert!("nonsense".parse::<BinlogPosition>().is_err());
        assert!("f:x".parse::<BinlogPosition>().is_err());
    }
}
