//! Column names from `information_schema`, for servers that do not log them.

use std::collections::HashMap;

use mysql_async::prelude::Queryable;

use super::MySqlSource;
use crate::error::{Error, Result};
use crate::model::Table;

/// Column names of the four tables from `information_schema`, for servers
/// that do not log them (`binlog_row_metadata=MINIMAL`).
#[derive(Default)]
pub struct ColumnNames {
    names: HashMap<&'static str, Vec<String>>,
    warned: bool,
}

impl ColumnNames {
    pub fn clear(&mut self) {
        self.names.clear();
    }

    pub fn has(&self, table: Table) -> bool {
        self.names.contains_key(table.name())
    }

    pub fn get(&self, table: Table) -> Option<&[String]> {
        self.names.get(table.name()).map(Vec::as_slice)
    }

    pub fn insert(&mut self, table: Table, names: Vec<String>) {
        self.names.insert(table.name(), names);
    }

    pub async fn fetch(&mut self, source: &MySqlSource, table: Table) -> Result<Vec<String>> {
        if !self.warned {
            self.warned = true;
            tracing::warn!(
                "the binlog carries no column names; reading them from information_schema. \
                 Set binlog_row_metadata=FULL on the server so that replaying old events after \
                 a schema change stays exact"
            );
        }
        let mut conn = source.connect().await?;
        let names: Vec<String> = conn
            .exec(
                "SELECT column_name FROM information_schema.columns \
                 WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                (source.database(), table.name()),
            )
            .await
            .map_err(|e| Error::mysql("reading column names", e))?;
        let _ = conn.disconnect().await;
        Ok(names)
    }
}
