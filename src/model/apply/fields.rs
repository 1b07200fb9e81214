//! The fields a row change writes to session hashes.

use crate::model::{Bytes, Field};

/// Fields to write to session hashes, sorted once into values to set and
/// fields to remove (a change of a user's row is written to each of the
/// user's live sessions, each getting a copy).
#[derive(Clone, Default)]
pub(super) struct FieldWrites {
    pub(super) set: Vec<(Bytes, Bytes)>,
    pub(super) unset: Vec<Bytes>,
}

impl FieldWrites {
    pub(super) fn of(fields: &[Field]) -> Self {
        let mut writes = FieldWrites {
            set: Vec::with_capacity(fields.len()),
            unset: Vec::new(),
        };
        for (name, value) in fields {
            writes.add(name.as_bytes().to_vec(), value.clone());
        }
        writes
    }

    pub(super) fn one(name: Bytes, value: Option<Bytes>) -> Self {
        let mut writes = FieldWrites::default();
        writes.add(name, value);
        writes
    }

    fn add(&mut self, name: Bytes, value: Option<Bytes>) {
        match value {
            Some(value) => self.set.push((name, value)),
            None => self.unset.push(name),
        }
    }
}

/// The fields of `new` whose values differ from those of `old`, the same
/// fields of the row before the change.
pub(super) fn changed<const N: usize>(new: [Field; N], old: [Field; N]) -> Vec<Field> {
    new.into_iter()
        .zip(old)
        .filter(|(new, old)| new.1 != old.1)
        .map(|(new, _)| new)
        .collect()
}
