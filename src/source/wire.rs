//! Event bodies that `mysql_common` leaves as bytes: MariaDB's GTID event,
//! the XA prepare event, MariaDB's compressed query and rows events, and
//! the name in a rotate event, whose trailing checksum the server may or
//! may not have written.

use std::io::Read;

use flate2::read::ZlibDecoder;

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
/// MySQL's second heartbeat event (8.0.26 and later), which `mysql_common`
/// does not know.
pub const MYSQL_HEARTBEAT_V2: u8 = 41;
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

/// MariaDB's compressed form (`log_bin_compress=ON`): one byte, `0x80`
/// with the algorithm in bits 4-6 (0: zlib) and the width of the length in
/// bits 0-2; the uncompressed length, high byte first; the zlib stream.
pub fn uncompress(body: &[u8]) -> Option<Vec<u8>> {
    let first = *body.first()?;
    if first & 0x80 == 0 || first & 0x70 != 0 {
        return None;
    }
    let width = usize::from(first & 0x07);
    if !(1..=4).contains(&width) {
        return None;
    }
    let len = body
        .get(1..1 + width)?
        .iter()
        .fold(0u64, |len, b| len << 8 | u64::from(*b));
    let mut out = Vec::with_capacity(usize::try_from(len).ok()?.min(1 << 24));
    ZlibDecoder::new(&body[1 + width..])
        .take(len + 1)
        .read_to_end(&mut out)
        .ok()?;
    (out.len() as u64 == len).then_some(out)
}

/// A compressed query event's default database and statement. Its body is
/// a query event's: thread id (4), time (4), database name length (1),
/// error code (2), status variables' length (2), the status variables, the
/// database name and a NUL, then the statement, compressed.
pub fn compressed_query(data: &[u8]) -> Option<(String, String)> {
    let db_len = usize::from(*data.get(8)?);
    let status_len = usize::from(u16::from_le_bytes(data.get(11..13)?.try_into().ok()?));
    let db_at = 13 + status_len;
    let db = data.get(db_at..db_at + db_len)?;
    let text = uncompress(data.get(db_at + db_len + 1..)?)?;
    Some((
        String::from_utf8_lossy(db).into_owned(),
        String::from_utf8_lossy(&text).into_owned(),
    ))
}

/// A compressed rows event as the rows event it stands for: that event's
/// type, and its body (table id, flags, the extra header of a v2 event,
/// the column count and bitmaps as they are; the rows uncompressed).
pub fn uncompressed_rows(kind: u8, data: &[u8]) -> Option<(u8, Vec<u8>)> {
    let v2 = kind >= 169;
    let plain = match v2 {
        true => kind.checked_sub(169)? + 30,
        false => kind.checked_sub(166)? + 23,
    };
    let update = plain == 24 || plain == 31;
    let mut at = 8; // table id (6), flags (2)
    if v2 {
        at += usize::from(u16::from_le_bytes(data.get(8..10)?.try_into().ok()?));
    }
    let (width, used) = packed_int(data.get(at..)?)?;
    at += used;
    let bitmap = usize::try_from(width.div_ceil(8)).ok()?;
    at += if update { 2 * bitmap } else { bitmap };
    let rows = uncompress(data.get(at..)?)?;
    let mut body = data.get(..at)?.to_vec();
    body.extend_from_slice(&rows);
    Some((plain, body))
}

/// A length-encoded integer, and the bytes it took.
fn packed_int(data: &[u8]) -> Option<(u64, usize)> {
    let wide = |n: usize| {
        let bytes = data.get(1..1 + n)?;
        let value = bytes.iter().rev().fold(0u64, |v, b| v << 8 | u64::from(*b));
        Some((value, 1 + n))
    };
    match *data.first()? {
        b @ 0..=250 => Some((u64::from(b), 1)),
        252 => wide(2),
        253 => wide(3),
        254 => wide(8),
        _ => None,
    }
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

    fn compress(plain: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(plain).unwrap();
        let zipped = z.finish().unwrap();
        let len = (plain.len() as u32).to_be_bytes();
        let mut out = vec![0x80 | 3];
        out.extend_from_slice(&len[1..]);
        out.extend(zipped);
        out
    }

    #[test]
    fn compressed_bodies_uncompress_or_fail_cleanly() {
        let text = b"TRUNCATE TABLE session_data /* a long enough comment */";
        assert_eq!(uncompress(&compress(text)).as_deref(), Some(&text[..]));
        let mut other_algorithm = compress(text);
        other_algorithm[0] |= 0x10;
        assert_eq!(uncompress(&other_algorithm), None);
        let mut wrong_length = compress(text);
        wrong_length[3] ^= 1;
        assert_eq!(uncompress(&wrong_length), None);
        assert_eq!(
            uncompress(&compress(text)[..6]),
            None,
            "truncated: no panic"
        );
        assert_eq!(uncompress(&[]), None);
    }

    #[test]
    fn a_compressed_query_event() {
        let mut data = vec![0u8; 13];
        data[8] = 8; // database name length
        data[11..13].copy_from_slice(&2u16.to_le_bytes());
        data.extend_from_slice(&[0, 0]); // status variables
        data.extend_from_slice(b"sessions\0");
        data.extend(compress(b"UPDATE users SET email = 'x'"));
        assert_eq!(
            compressed_query(&data),
            Some(("sessions".into(), "UPDATE users SET email = 'x'".into()))
        );
        assert_eq!(compressed_query(&data[..20]), None);
    }

    #[test]
    fn a_compressed_update_rows_event_keeps_its_head() {
        // table id 18, flags, 3 columns, two bitmaps, then the rows.
        let head = [18, 0, 0, 0, 0, 0, 1, 0, 3, 0b111, 0b111];
        let mut data = head.to_vec();
        data.extend(compress(b"row bytes"));
        let (kind, body) = uncompressed_rows(167, &data).unwrap();
        assert_eq!(kind, 24, "update rows v1");
        assert_eq!(&body[..head.len()], &head);
        assert_eq!(&body[head.len()..], b"row bytes");
        // A v2 write event: a two-byte extra header, one bitmap.
        let mut v2 = vec![18, 0, 0, 0, 0, 0, 1, 0, 2, 0, 3, 0b111];
        v2.extend(compress(b"rows"));
        let (kind, body) = uncompressed_rows(169, &v2).unwrap();
        assert_eq!((kind, &body[12..]), (30, &b"rows"[..]));
        assert_eq!(uncompressed_rows(166, &head[..9]), None);
    }
}
