//! Pure comparison of what Redis holds with what the model gives.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::Bytes;

/// What kind of difference a key shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// The model gives the key; Redis does not have it.
    Missing,
    /// Redis has a key of the namespace that the model does not give.
    Extra,
    /// A field's value differs, is missing, or should not be there.
    Field,
    /// The key's expiry differs from `expires_at`, or it has none.
    Ttl,
    /// A user index misses a session, holds one too many, or has a wrong score.
    Index,
}

/// One difference, for the report's examples.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub key: String,
    pub kind: DiffKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
}

impl Difference {
    pub fn new(key: &[u8], kind: DiffKind) -> Self {
        Difference {
            key: text(key),
            kind,
            field: None,
            expected: None,
            found: None,
        }
    }

    fn with(mut self, field: &[u8], expected: Option<String>, found: Option<String>) -> Self {
        self.field = Some(text(field));
        self.expected = expected;
        self.found = found;
        self
    }
}

/// Printable form of bytes, shortened when long.
pub fn text(bytes: &[u8]) -> String {
    const MAX: usize = 80;
    let s = String::from_utf8_lossy(bytes);
    if s.chars().count() > MAX {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}… ({} bytes)", bytes.len())
    } else {
        s.into_owned()
    }
}

/// Differences between a session hash the model gives and the one Redis
/// holds (`found` is empty when the key is missing), with its expiry
/// (`EXPIRETIME`: -2 no key, -1 no TTL).
pub fn compare_session(
    key: &[u8],
    expected: &[(Bytes, Bytes)],
    expected_expire_at: i64,
    found: Vec<(Bytes, Bytes)>,
    found_expire_at: i64,
) -> Vec<Difference> {
    if found.is_empty() && found_expire_at == -2 {
        return vec![Difference::new(key, DiffKind::Missing)];
    }
    let mut found: BTreeMap<Bytes, Bytes> = found.into_iter().collect();
    let mut diffs = Vec::new();
    for (field, value) in expected {
        match found.remove(field) {
            Some(actual) if &actual == value => {}
            actual => diffs.push(Difference::new(key, DiffKind::Field).with(
                field,
                Some(text(value)),
                actual.as_deref().map(text),
            )),
        }
    }
    for (field, actual) in found {
        diffs.push(Difference::new(key, DiffKind::Field).with(&field, None, Some(text(&actual))));
    }
    if found_expire_at != expected_expire_at {
        diffs.push(Difference {
            expected: Some(expected_expire_at.to_string()),
            found: Some(describe_expiry(found_expire_at)),
            ..Difference::new(key, DiffKind::Ttl)
        });
    }
    diffs
}

fn describe_expiry(expire_at: i64) -> String {
    match expire_at {
        -1 => "no TTL".to_string(),
        -2 => "no key".to_string(),
        at => at.to_string(),
    }
}

/// Differences of a user index: `required` are the live sessions (with their
/// scores) that must be members; `optional` may be members or not (sessions
/// about to expire); members whose score is at most `linger_until` are not
/// judged, required or not: they may be there or gone. The index's expiry
/// must be its largest score.
pub fn compare_index(
    key: &[u8],
    required: &BTreeMap<Bytes, i64>,
    optional: &BTreeMap<Bytes, i64>,
    linger_until: i64,
    found: Vec<(Bytes, i64)>,
    found_expire_at: i64,
) -> Vec<Difference> {
    let judged = |score: &i64| *score > linger_until;
    let mut expected = required.iter().filter(|(_, s)| judged(s)).peekable();
    if expected.peek().is_none() && !found.iter().any(|(_, s)| judged(s)) {
        return Vec::new();
    }
    if found.is_empty() {
        return vec![Difference::new(key, DiffKind::Missing)];
    }
    let mut diffs = Vec::new();
    let max_score = found.iter().map(|(_, s)| *s).max().unwrap_or_default();
    let found: BTreeMap<Bytes, i64> = found.into_iter().collect();
    for (member, score) in expected {
        match found.get(member) {
            Some(actual) if actual == score => {}
            actual => diffs.push(Difference::new(key, DiffKind::Index).with(
                member,
                Some(score.to_string()),
                actual.map(|a| a.to_string()),
            )),
        }
    }
    for (member, score) in &found {
        let allowed =
            required.contains_key(member) || optional.contains_key(member) || !judged(score);
        if !allowed {
            diffs.push(Difference::new(key, DiffKind::Index).with(
                member,
                None,
                Some(score.to_string()),
            ));
        }
    }
    if found_expire_at != max_score {
        diffs.push(Difference {
            expected: Some(max_score.to_string()),
            found: Some(describe_expiry(found_expire_at)),
            ..Difference::new(key, DiffKind::Ttl)
        });
    }
    diffs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(Bytes, Bytes)> {
        items
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn equal_hashes_have_no_difference() {
        let h = pairs(&[("a", "1"), ("b", "2")]);
        assert!(compare_session(b"k", &h, 100, h.clone(), 100).is_empty());
    }

    #[test]
    fn reports_each_kind_of_hash_difference() {
        let expected = pairs(&[("a", "1"), ("b", "2")]);
        let found = pairs(&[("a", "9"), ("c", "3")]);
        let diffs = compare_session(b"k", &expected, 100, found, -1);
        let kinds: Vec<_> = diffs.iter().map(|d| (d.kind, d.field.clone())).collect();
        assert_eq!(
            kinds,
            [
                (DiffKind::Field, Some("a".into())),
                (DiffKind::Field, Some("b".into())),
                (DiffKind::Field, Some("c".into())),
                (DiffKind::Ttl, None),
            ]
        );
        assert_eq!(diffs[3].found.as_deref(), Some("no TTL"));
        assert_eq!(
            compare_session(b"k", &expected, 1, vec![], -2)[0].kind,
            DiffKind::Missing
        );
    }

    #[test]
    fn index_members_scores_and_ttl() {
        let expected: BTreeMap<Bytes, i64> = [(b"s1".to_vec(), 50)].into();
        let optional = BTreeMap::new();
        let ok = vec![(b"s1".to_vec(), 50), (b"old".to_vec(), 5)];
        assert!(compare_index(b"i", &expected, &optional, 10, ok, 50).is_empty());
        let wrong = vec![(b"s1".to_vec(), 51), (b"x".to_vec(), 60)];
        let diffs = compare_index(b"i", &expected, &optional, 10, wrong, 50);
        assert_eq!(diffs.len(), 3, "{diffs:?}");
        let stray = compare_index(
            b"i",
            &BTreeMap::new(),
            &optional,
            10,
            vec![(b"x".to_vec(), 60)],
            60,
        );
        assert_eq!(stray.len(), 1);
        assert_eq!(stray[0].kind, DiffKind::Index);
        assert_eq!(
            compare_index(b"i", &expected, &optional, 10, vec![], -2)[0].kind,
            DiffKind::Missing
        );
        // By the time the index is read, s1 (required when the sessions were
        // checked) may have expired: it is no longer judged, nor is the key.
        assert!(compare_index(b"i", &expected, &optional, 50, vec![], -2).is_empty());
        let gone = vec![(b"s2".to_vec(), 70)];
        assert!(compare_index(b"i", &expected, &optional, 50, gone, 70)
            .iter()
            .all(|d| d.field.as_deref() != Some("s1")));
    }
}
