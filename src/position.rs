//! The binlog position as a value type.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The name of one binlog file, `base.sequence` (`binlog.000042`), parsed
/// once: the server numbers its files, and only a name with a numeric
/// extension is one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BinlogFile {
    name: String,
    /// Length of the base name, before the last `.`.
    base_len: usize,
    sequence: u64,
}

impl BinlogFile {
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The base name (`binlog` of `binlog.000042`).
    pub fn base(&self) -> &str {
        &self.name[..self.base_len]
    }

    /// The numeric extension (`42` of `binlog.000042`).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }
}

impl FromStr for BinlogFile {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let not_a_name = || {
            format!(
                "`{name}` is not a binlog file name: expected a base name and a numeric \
                 extension, like binlog.000042"
            )
        };
        let (base, extension) = name.rsplit_once('.').ok_or_else(not_a_name)?;
        if base.is_empty() || extension.is_empty() || !extension.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(not_a_name());
        }
        let sequence = extension.parse().map_err(|_| not_a_name())?;
        Ok(BinlogFile {
            name: name.to_string(),
            base_len: base.len(),
            sequence,
        })
    }
}

impl TryFrom<String> for BinlogFile {
    type Error = String;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        name.parse()
    }
}

impl From<BinlogFile> for String {
    fn from(file: BinlogFile) -> String {
        file.name
    }
}

impl fmt::Display for BinlogFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A position in the source's binary log: the file and the byte offset of the
/// next event to read, plus the GTID position where the server has one.
///
/// Positions of one binlog (one base name) order by the file's sequence
/// number, then by offset; the GTID is carried along but takes no part in
/// the order or in equality. Positions of two base names (the server's
/// `log_basename` changed) have no order: [`BinlogPosition::compare`] says
/// so as an error, and `partial_cmp` gives `None`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BinlogPosition {
    pub file: BinlogFile,
    pub offset: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
}

impl BinlogPosition {
    pub fn new(file: BinlogFile, offset: u64) -> Self {
        BinlogPosition {
            file,
            offset,
            gtid: None,
        }
    }

    /// A position in the file of this name, as the server reported it.
    pub fn parse(file: &str, offset: u64) -> Result<Self, String> {
        Ok(BinlogPosition::new(file.parse()?, offset))
    }

    pub fn with_gtid(mut self, gtid: Option<String>) -> Self {
        self.gtid = gtid.filter(|g| !g.is_empty());
        self
    }

    /// The order of two positions of the same binlog; an error naming both
    /// when they belong to binlogs of different base names.
    pub fn compare(&self, other: &Self) -> Result<Ordering, String> {
        self.partial_cmp(other).ok_or_else(|| {
            format!(
                "binlog positions {self} and {other} belong to binlogs of different base names \
                 (the server's log_basename changed): they cannot be compared"
            )
        })
    }
}

impl PartialEq for BinlogPosition {
    fn eq(&self, other: &Self) -> bool {
        self.file == other.file && self.offset == other.offset
    }
}

impl Eq for BinlogPosition {}

impl PartialOrd for BinlogPosition {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        if self.file.base() != other.file.base() {
            return None;
        }
        Some(
            self.file
                .sequence
                .cmp(&other.file.sequence)
                .then_with(|| self.offset.cmp(&other.offset)),
        )
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
        BinlogPosition::parse(file, offset).map_err(|e| format!("binlog position `{s}`: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(file: &str, offset: u64) -> BinlogPosition {
        BinlogPosition::parse(file, offset).unwrap()
    }

    #[test]
    fn orders_by_file_sequence_then_offset() {
        let a = at("binlog.000009", 900);
        let b = at("binlog.000010", 4);
        let c = at("binlog.000010", 120);
        let d = at("binlog.1000000", 4);
        assert!(a < b && b < c && c < d);
        assert_eq!(c.clone().with_gtid(Some("0-1-5".into())), c);
        assert_eq!(a.compare(&b), Ok(Ordering::Less));
    }

    #[test]
    fn positions_of_two_base_names_have_no_order() {
        let a = at("binlog.000009", 900);
        let b = at("mysql-bin.000010", 4);
        assert_eq!(a.partial_cmp(&b), None);
        assert!(a.partial_cmp(&b).is_none() && b.partial_cmp(&a).is_none() && a != b);
        let err = a.compare(&b).unwrap_err();
        assert!(err.contains("binlog.000009:900") && err.contains("mysql-bin.000010:4"));
    }

    #[test]
    fn a_file_name_without_a_number_is_refused() {
        for bad in ["binlog", "binlog.", ".000001", "binlog.00a1", "binlog.-1"] {
            assert!(bad.parse::<BinlogFile>().is_err(), "{bad}");
        }
        let file: BinlogFile = "my.host-bin.000003".parse().unwrap();
        assert_eq!((file.base(), file.sequence()), ("my.host-bin", 3));
    }

    #[test]
    fn display_and_parse_round_trip() {
        let p = at("mysql-bin.000003", 1234);
        assert_eq!(p.to_string(), "mysql-bin.000003:1234");
        assert_eq!(
            "mysql-bin.000003:1234".parse::<BinlogPosition>().unwrap(),
            p
        );
        assert!("nonsense".parse::<BinlogPosition>().is_err());
        assert!("f:x".parse::<BinlogPosition>().is_err());
        assert!("nonumber:4".parse::<BinlogPosition>().is_err());
    }

    #[test]
    fn serializes_as_the_file_name() {
        let p = at("binlog.000007", 42);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"{"file":"binlog.000007","offset":42}"#);
        assert_eq!(serde_json::from_str::<BinlogPosition>(&json).unwrap(), p);
        let bad = r#"{"file":"binlog","offset":42}"#;
        assert!(serde_json::from_str::<BinlogPosition>(bad).is_err());
    }
}
