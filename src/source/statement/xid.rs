//! XA transaction ids as the server writes them in `XA COMMIT` and
//! `XA ROLLBACK` statements.

use crate::model::Xid;

impl Xid {
    /// From the text after `XA COMMIT` / `XA ROLLBACK` (`X'..',X'..',N`,
    /// or the quoted string forms a client may type).
    pub fn parse(text: &str) -> Option<Xid> {
        let mut parts = split_xid(text.trim())?.into_iter();
        let gtrid = parts.next()?;
        let bqual = parts.next().unwrap_or_default();
        let format_id = match parts.next() {
            Some(n) => std::str::from_utf8(&n).ok()?.trim().parse().ok()?,
            None => 1,
        };
        Some(Xid::from_parts(format_id, &gtrid, &bqual))
    }
}

/// The comma-separated parts of an xid: `X'6131'` and `'a1'` give bytes, a
/// bare number its digits.
fn split_xid(text: &str) -> Option<Vec<Vec<u8>>> {
    let mut parts = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let (part, after) = if let Some(r) = rest
            .strip_prefix(['X', 'x'])
            .and_then(|r| r.strip_prefix('\''))
        {
            let end = r.find('\'')?;
            let digits = &r[..end];
            let bytes = (0..digits.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(digits.get(i..i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()?;
            (bytes, &r[end + 1..])
        } else if let Some(r) = rest.strip_prefix('\'') {
            let end = r.find('\'')?;
            (r.as_bytes()[..end].to_vec(), &r[end + 1..])
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            (rest[..end].trim().as_bytes().to_vec(), &rest[end..])
        };
        parts.push(part);
        rest = after.trim_start();
        match rest.strip_prefix(',') {
            Some(r) => rest = r,
            None if rest.is_empty() => {}
            None => return None,
        }
    }
    Some(parts)
}
