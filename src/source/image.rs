//! Row images of a rows event, read straight into the model's columns.
//!
//! `mysql_common`'s `BinlogRow` builds a `Column` (schema, table and column
//! name, flags) for every column of every row, then the model looks its
//! columns up by name in each row, which costs several times what reading
//! them this way does (docs/performance.md). Here a table map is read once
//! per rows event into a [`Layout`]: each column's type, metadata and
//! signedness, and which model column it is, if any. Each image is then read
//! value by value with `mysql_common`'s own value decoder, and only the
//! model's columns are kept.
//!
//! An image (see MySQL's `log_event.cc`): for a partial update's after image,
//! the value options and a bitmap of partial JSON columns; then a bitmap of
//! NULLs over the columns present in the image; then each present, non-NULL
//! value in column order.

use std::io;

use bitvec::slice::BitSlice;
use mysql_async::binlog::events::{OptionalMetaExtractor, RowsEventData, TableMapEvent};
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType;
use mysql_async::Value;
use mysql_common::io::ParseBuf;
use mysql_common::misc::raw::int::LenEnc;
use mysql_common::misc::raw::RawInt;

use super::Table;
use crate::error::{Error, Result};
use crate::model::{RowChange, SourceRow};

/// The `PARTIAL_JSON_UPDATES` bit of a partial update's value options.
const PARTIAL_JSON_UPDATES: u64 = 1;

/// How to read the images of one table's rows events.
pub struct Layout<'a> {
    table: Table,
    columns: Vec<LayoutColumn<'a>>,
    json_columns: usize,
}

struct LayoutColumn<'a> {
    ty: ColumnType,
    meta: &'a [u8],
    unsigned: bool,
    /// The column's place in [`Table::columns`], if the model reads it.
    pick: Option<usize>,
}

/// A column of a table, as its table map describes it.
#[derive(Clone, Copy, Debug)]
pub struct ColumnSpec<'a> {
    pub ty: ColumnType,
    /// The type's metadata (lengths, precision), as the table map carries it.
    pub meta: &'a [u8],
    pub unsigned: bool,
}

impl<'a> Layout<'a> {
    /// The layout of `table` from its table map. Column names come from the
    /// map's metadata (`binlog_row_metadata=FULL`), else from `names` (read
    /// from `information_schema`).
    pub fn new(table: Table, tme: &'a TableMapEvent<'a>, names: Option<&[String]>) -> Result<Self> {
        let bad = |what: String| Error::decode(table.name(), what);
        let meta = OptionalMetaExtractor::new(tme.iter_optional_meta())
            .map_err(|e| bad(format!("unreadable table map metadata: {e}")))?;
        let mut signedness = meta.iter_signedness();
        let logged: Vec<String> = meta
            .iter_column_name()
            .map(|name| name.map(|n| n.name().into_owned()))
            .collect::<io::Result<_>>()
            .map_err(|e| bad(format!("unreadable column names in the table map: {e}")))?;
        let names = match names {
            Some(names) if logged.is_empty() => names,
            _ => &logged[..],
        };
        let count = usize::try_from(tme.columns_count()).unwrap_or(usize::MAX);
        let mut columns = Vec::with_capacity(count);
        for i in 0..count {
            let ty = match tme.get_column_type(i) {
                Ok(Some(ty)) => ty,
                Ok(None) => return Err(bad(format!("the table map has no type for column {i}"))),
                Err(e) => return Err(bad(format!("column {i}: {e}"))),
            };
            columns.push(ColumnSpec {
                ty,
                meta: tme.get_column_metadata(i).unwrap_or(&[]),
                // As `mysql_common` reads it: one bit per numeric column.
                unsigned: ty.is_numeric_type() && signedness.next().unwrap_or_default(),
            });
        }
        Self::from_columns(table, &columns, names, tme.json_column_count())
    }

    /// The layout of `table` from its columns and their `names` (in table
    /// order); a model column not among them is an error.
    pub fn from_columns(
        table: Table,
        columns: &[ColumnSpec<'a>],
        names: &[impl AsRef<str>],
        json_columns: usize,
    ) -> Result<Self> {
        let columns: Vec<LayoutColumn<'a>> = columns
            .iter()
            .enumerate()
            .map(|(i, spec)| LayoutColumn {
                ty: spec.ty,
                meta: spec.meta,
                unsigned: spec.unsigned,
                pick: names.get(i).and_then(|name| {
                    table
                        .columns()
                        .iter()
                        .position(|wanted| name.as_ref().eq_ignore_ascii_case(wanted))
                }),
            })
            .collect();
        if let Some((_, missing)) = table
            .columns()
            .iter()
            .enumerate()
            .find(|(at, _)| !columns.iter().any(|c| c.pick == Some(*at)))
        {
            return Err(Error::decode(
                table.name(),
                format!("the binlog row has no column `{missing}`"),
            ));
        }
        Ok(Layout {
            table,
            columns,
            json_columns,
        })
    }

    /// Reads every row change of `event`, handing each to `each`.
    pub fn read<'b>(
        &'b self,
        event: &'b RowsEventData<'_>,
        mut each: impl FnMut(RowChange) -> Result<()>,
    ) -> Result<()> {
        let partial = matches!(event, RowsEventData::PartialUpdateRowsEvent(_));
        let before_cols = event.columns_before_image();
        let after_cols = event.columns_after_image();
        let mut buf = ParseBuf(event.rows_data());
        while !buf.is_empty() {
            let before = before_cols
                .map(|cols| self.image(&mut buf, cols, false))
                .transpose()?;
            let after = after_cols
                .map(|cols| self.image(&mut buf, cols, partial))
                .transpose()?;
            let change = match (before, after) {
                (None, Some(after)) => RowChange::Insert(after),
                (Some(before), Some(after)) => RowChange::Update { before, after },
                (Some(before), None) => RowChange::Delete(before),
                (None, None) => return Ok(()),
            };
            each(change)?;
        }
        Ok(())
    }

    /// Reads one image from `buf`: the model's columns of one row.
    /// `present`: the event's bitmap of the columns in its images;
    /// `partial`: the after image of a partial update.
    pub fn image<'b>(
        &'b self,
        buf: &mut ParseBuf<'b>,
        present: &BitSlice<u8>,
        partial: bool,
    ) -> Result<SourceRow> {
        let table = self.table.name();
        let short = |e: io::Error| Error::decode(table, format!("unreadable row image: {e}"));
        let mut partial_json = None;
        if partial {
            let options = *buf.parse::<RawInt<LenEnc>>(()).map_err(short)?;
            if options & PARTIAL_JSON_UPDATES != 0 {
                let bits: &[u8] = buf.parse(self.json_columns.div_ceil(8)).map_err(short)?;
                partial_json = Some(bits);
            }
        }
        let in_image = present.count_ones();
        let nulls: &[u8] = buf.parse(in_image.div_ceil(8)).map_err(short)?;
        let mut picked: Vec<Option<Value>> = vec![None; self.table.columns().len()];
        let (mut image_at, mut json_at) = (0usize, 0usize);
        for (i, column) in self.columns.iter().enumerate() {
            let is_json = column.ty == ColumnType::MYSQL_TYPE_JSON;
            let is_partial = is_json && partial_json.is_some_and(|bits| bit(bits, json_at));
            json_at += usize::from(is_json);
            if !present.get(i).is_some_and(|b| *b) {
                continue;
            }
            let is_null = bit(nulls, image_at);
            image_at += 1;
            let value = if is_null {
                Value::NULL
            } else {
                let ctx = (column.ty, column.meta, column.unsigned, is_partial);
                match buf.parse::<BinlogValue<'_>>(ctx).map_err(short)? {
                    BinlogValue::Value(value) => value,
                    // JSON of a column the model does not read.
                    _ if column.pick.is_none() => continue,
                    other => {
                        return Err(Error::decode(
                            table,
                            format!("column {i} holds an unexpected value {other:?}"),
                        ))
                    }
                }
            };
            if let Some(at) = column.pick {
                picked[at] = Some(value);
            }
        }
        let row = picked
            .into_iter()
            .zip(self.table.columns())
            .map(|(value, name)| {
                value.ok_or_else(|| {
                    Error::decode(
                        table,
                        format!(
                            "the binlog row image lacks column `{name}`: set binlog_row_image=FULL"
                        ),
                    )
                })
            })
            .collect::<Result<Vec<Value>>>()?;
        self.table.decode(row)
    }
}

/// Bit `i` of a little-endian bitmap (MySQL's bitmaps: bit 0 is the low bit
/// of the first byte).
fn bit(bits: &[u8], i: usize) -> bool {
    bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

#[cfg(test)]
mod tests {
    use bitvec::prelude::*;

    use super::*;
    use crate::model::User;

    /// `users` as the server logs it: user_id INT, username VARCHAR(255),
    /// password_hash VARCHAR(255), email VARCHAR(255) (utf8mb4: 1020 bytes,
    /// so a two-byte length).
    fn users() -> Layout<'static> {
        const VARCHAR: &[u8] = &[0xfc, 0x03];
        let column = |ty, meta| ColumnSpec {
            ty,
            meta,
            unsigned: false,
        };
        let columns = [
            column(ColumnType::MYSQL_TYPE_LONG, &[]),
            column(ColumnType::MYSQL_TYPE_VARCHAR, VARCHAR),
            column(ColumnType::MYSQL_TYPE_VARCHAR, VARCHAR),
            column(ColumnType::MYSQL_TYPE_VARCHAR, VARCHAR),
        ];
        let names = ["user_id", "username", "password_hash", "EMAIL"];
        Layout::from_columns(Table::Users, &columns, &names, 0).unwrap()
    }

    /// An image of `users`: the NULL bitmap, the user id, then each text
    /// as a VARCHAR (two-byte length).
    fn image(nulls: u8, user_id: i32, texts: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![nulls];
        out.extend_from_slice(&user_id.to_le_bytes());
        for text in texts {
            out.extend_from_slice(&(text.len() as u16).to_le_bytes());
            out.extend_from_slice(text);
        }
        out
    }

    #[test]
    fn reads_the_model_columns_and_skips_the_others() {
        // No NULLs among the 4 columns.
        let data = image(0, 42, &[b"ann", b"$argon2$secret", b"ann@example.com"]);
        let present = bitvec![u8, Lsb0; 1, 1, 1, 1];
        let layout = users();
        let mut buf = ParseBuf(&data);
        let row = layout.image(&mut buf, &present, false).unwrap();
        assert!(buf.is_empty(), "the whole image is consumed");
        assert_eq!(
            row,
            SourceRow::User(User {
                user_id: 42,
                username: b"ann".to_vec(),
                email: b"ann@example.com".to_vec(),
            })
        );
    }

    #[test]
    fn nulls_take_no_bytes_and_reach_the_decoder() {
        // password_hash (image column 2) is NULL.
        let data = image(0b0100, 7, &[b"bo", b"bo@x"]);
        let present = bitvec![u8, Lsb0; 1, 1, 1, 1];
        let layout = users();
        let mut buf = ParseBuf(&data);
        let row = layout.image(&mut buf, &present, false).unwrap();
        assert!(buf.is_empty());
        assert!(matches!(row, SourceRow::User(u) if u.user_id == 7 && u.email == b"bo@x"));

        // A NULL in a column the model needs is the decoder's to judge.
        let data = image(0b0010, 7, &[b"h", b"bo@x"]); // username NULL
        let err = users()
            .image(&mut ParseBuf(&data), &present, false)
            .unwrap_err();
        assert!(err.to_string().contains("username"), "{err}");
    }

    #[test]
    fn a_minimal_image_is_refused_with_the_setting_to_change() {
        // binlog_row_image=MINIMAL: only the key is in the image.
        let data = image(0, 7, &[]);
        let present = bitvec![u8, Lsb0; 1, 0, 0, 0];
        let err = users()
            .image(&mut ParseBuf(&data), &present, false)
            .unwrap_err();
        assert!(err.to_string().contains("binlog_row_image=FULL"), "{err}");
    }

    #[test]
    fn a_truncated_image_is_an_error_not_a_panic() {
        let mut data = image(0, 7, &[]);
        data.extend_from_slice(&[10, 0, b'a']); // says 10 bytes, has 1
        let present = bitvec![u8, Lsb0; 1, 1, 1, 1];
        let err = users()
            .image(&mut ParseBuf(&data), &present, false)
            .unwrap_err();
        assert!(err.to_string().contains("unreadable row image"), "{err}");
    }

    #[test]
    fn a_model_column_missing_from_the_table_is_named() {
        let columns = [ColumnSpec {
            ty: ColumnType::MYSQL_TYPE_LONG,
            meta: &[],
            unsigned: false,
        }];
        let err = Layout::from_columns(Table::Users, &columns, &["user_id"], 0)
            .err()
            .unwrap();
        assert!(err.to_string().contains("no column `username`"), "{err}");
    }

    #[test]
    fn bitmaps_are_read_low_bit_first() {
        assert!(bit(&[0b0000_0001], 0));
        assert!(!bit(&[0b0000_0001], 1));
        assert!(bit(&[0, 0b1000_0000], 15));
        assert!(!bit(&[0], 8), "past the end reads as unset");
    }
}
