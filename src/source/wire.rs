//! Event bodies that `mysql_common` leaves as bytes: MariaDB's GTID event,
//! the XA prepare event, and the name in a rotate event, whose trailing
//! checksum the server may or may not have written.

use crate::model::Xid;

/// MariaDB's GTID event type.
pub const MARIADB_GTID_EVENT: u8 = 162;
/// MariaDB's annotate-rows, binlog-checkpoint, GTID-list and
/// start-encryption events: bookkeeping that changes no rows.
pub const MARIADB_BOOKKEEPING: [u8; 4] = [160, 161, 163, 164];
/// MariaDB's compressed query event (`log_bin_compress=ON`).
pub const MARIADB_QUERY_COMPRESSED: u8 = 165;
/// MariaDB's compressed rows events: write, update, delete (v1), then the
/// same three (v2).
pub const MARIADB_ROWS_COMPRESSED: std::ops::RangeInclusive<u8> = 166..=171;
/// The header flag of an event a replica may skip when it does not know it.
pub const LOG_EVENT_IGNORABLE_F: u16 = 0x80;

/// MariaDB GTID flags: a single statement, no BEGIN/COMMIT...
const FL_STANDALONE: u8 = 1;
/// ...and the start of an XA transaction (`XA START`).
const FL_PREPARED_XA: u8 = 64;

/// A MariaDB GTID event's body.
#[derive(Debug, PartialEq, Eq)]
pub struct MariaGtid {
    pub domain: u32,
    pub seq: u64,
    pub standalone: bool,
    pub xa: bool,
}

/// Reads a MariaDB GTID event: sequence (8 bytes), domain (4), flags (1).
pub fn mariadb_gtid(data: &[u8]) -> Option<MariaGtid> {
    let seq = u64::from_le_bytes(data.get(0..8)?.try_into().ok()?);
    let domain = u32::from_le_bytes(data.get(8..12)?.try_into().ok()?);
    let flags = *data.get(12)?;
    Some(MariaGtid {
        domain,
        seq,
        standalone: flags & FL_STANDALONE != 0,
        xa: flags & FL_PREPARED_XA != 0,
    })
}

/// Reads an `XA_PREPARE` event: one-phase flag (1 byte), format id (4),
/// gtrid and bqual lengths (4 each), then their bytes.
pub fn xa_prepare(data: &[u8]) -> Option<(Xid, bool)> {
    let one_phase = *data.first()? != 0;
    let word = |at: usize| Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?));
    let format_id = word(1)? as i32;
    let gtrid = word(5)? as usize;
    let bqual = word(9)? as usize;
    let ids = data.get(13..13 + gtrid.checked_add(bqual)?)?;
    let (gtrid, bqual) = ids.split_at(gtrid);
    Some((
        Xid::from_parts(i64::from(format_id), gtrid, bqual),
        one_phase,
    ))
}

/// The file name of a rotate event whose whole body is `body` (position,
/// 8 bytes, then the name), and `header`, its 19 bytes as sent. The body
/// ends with a CRC32 of the event when the server wrote one: whether it did
/// depends on the checksum setting of the file it comes from, which for the
/// artificial rotate sent before a file's format description is not yet
/// known to the reader. So the checksum is recognised by itself: the last
/// four bytes are one exactly when they are the CRC32 of all the bytes
/// before them.
pub fn rotate_name<'b>(header: &[u8], body: &'b [u8]) -> Option<&'b [u8]> {
    let name = body.get(8..)?;
    if let Some(at) = name.len().checked_sub(4) {
        let (without, sum) = body.split_at(body.len() - 4);
        let mut crc = crc32fast::Hasher::new();
        crc.update(header);
        crc.update(without);
        if crc.finalize().to_le_bytes() == sum {
            return Some(&name[..at]);
        }
    }
    Some(name)
}

/// An event header as the server sent it (19 bytes, little-endian).
pub fn header_bytes(
    timestamp: u32,
    event_type: u8,
    server_id: u32,
    event_size: u32,
    log_pos: u32,
    flags: u16,
) -> [u8; 19] {
    let mut h = [0u8; 19];
    h[0..4].copy_from_slice(&timestamp.to_le_bytes());
    h[4] = event_type;
    h[5..9].copy_from_slice(&server_id.to_le_bytes());
    h[9..13].copy_from_slice(&event_size.to_le_bytes());
    h[13..17].copy_from_slice(&log_pos.to_le_bytes());
    h[17..19].copy_from_slice(&flags.to_le_bytes());
    h
}

/// The table id of a rows event (its first six bytes), compressed or not.
pub fn rows_table_id(data: &[u8]) -> Option<u64> {
    let mut id = [0u8; 8];
    id[..6].copy_from_slice(data.get(0..6)?);
    Some(u64::from_le_bytes(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_gtid_flags() {
        let mut data = 42u64.to_le_bytes().to_vec();
        data.extend_from_slice(&3u32.to_le_bytes());
        data.push(FL_STANDALONE);
        let g = mariadb_gtid(&data).unwrap();
        assert_eq!((g.domain, g.seq, g.standalone, g.xa), (3, 42, true, false));
        data[12] = FL_PREPARED_XA | 2;
        assert!(mariadb_gtid(&data).unwrap().xa);
        assert_eq!(mariadb_gtid(&data[..12]), None, "short: no panic");
    }

    #[test]
    fn xa_prepare_event() {
        let mut data = vec![0u8];
        data.extend_from_slice(&7u32.to_le_bytes());
        data.extend_from_slice(&2u32.to_le_bytes());
        data.extend_from_slice(&2u32.to_le_bytes());
        data.extend_from_slice(b"a2b2");
        let (xid, one_phase) = xa_prepare(&data).unwrap();
        assert_eq!(xid, Xid::from_parts(7, b"a2", b"b2"));
        assert!(!one_phase);
        data[0] = 1;
        assert!(xa_prepare(&data).unwrap().1);
        assert_eq!(xa_prepare(&data[..15]), None, "short: no panic");
    }

    fn rotate(name: &[u8], with_checksum: bool) -> ([u8; 19], Vec<u8>) {
        let mut body = 4u64.to_le_bytes().to_vec();
        body.extend_from_slice(name);
        let size = 19 + body.len() as u32 + if with_checksum { 4 } else { 0 };
        let header = header_bytes(0, 4, 1, size, 0, 0x20);
        if with_checksum {
            let mut crc = crc32fast::Hasher::new();
            crc.update(&header);
            crc.update(&body);
            body.extend_from_slice(&crc.finalize().to_le_bytes());
        }
        (header, body)
    }

    #[test]
    fn a_rotate_name_keeps_its_bytes_whatever_the_checksum_setting() {
        let (header, body) = rotate(b"binlog.000002", true);
        assert_eq!(rotate_name(&header, &body), Some(&b"binlog.000002"[..]));
        let (header, body) = rotate(b"binlog.000002", false);
        assert_eq!(rotate_name(&header, &body), Some(&b"binlog.000002"[..]));
        let (header, body) = rotate(b"abc", false);
        assert_eq!(rotate_name(&header, &body), Some(&b"abc"[..]));
        assert_eq!(rotate_name(&header, &body[..4]), None);
    }

    #[test]
    fn rows_table_ids() {
        assert_eq!(rows_table_id(&[18, 0, 0, 0, 0, 0, 1, 0]), Some(18));
        assert_eq!(rows_table_id(&[1, 2]), None);
    }
}
