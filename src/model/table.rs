//! The four source tables: their names, the columns the model reads, and
//! the query that reads them. Every other part takes these from here.

use super::SourceRow;

/// One of the four source tables, in the order the snapshot reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    Users,
    Preferences,
    Sessions,
    Attributes,
}

impl Table {
    pub const ALL: [Table; 4] = [
        Table::Users,
        Table::Preferences,
        Table::Sessions,
        Table::Attributes,
    ];

    /// The table's name in the source database.
    pub fn name(self) -> &'static str {
        match self {
            Table::Users => "users",
            Table::Preferences => "user_preferences",
            Table::Sessions => "user_sessions",
            Table::Attributes => "session_data",
        }
    }

    /// The table of this name (a binlog event's), when it is one of the four.
    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The table a row belongs to.
    pub fn of(row: &SourceRow) -> Table {
        match row {
            SourceRow::User(_) => Table::Users,
            SourceRow::Preferences(_) => Table::Preferences,
            SourceRow::Session(_) => Table::Sessions,
            SourceRow::Attribute(_) => Table::Attributes,
        }
    }

    /// The columns the model reads, in the order the decoder takes them.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Table::Users => &["user_id", "username", "email"],
            Table::Preferences => &["user_id", "theme", "language", "notifications_enabled"],
            Table::Sessions => &[
                "session_id",
                "user_id",
                "ip_address",
                "user_agent",
                "created_at",
                "expires_at",
                "last_activity_at",
            ],
            Table::Attributes => &["session_id", "attribute_key", "attribute_value"],
        }
    }

    /// Whether the column is a `DATETIME`/`TIMESTAMP` the model keeps as a
    /// Unix time.
    pub fn is_time(self, column: &str) -> bool {
        self == Table::Sessions && column.ends_with("_at")
    }

    /// The snapshot's query: [`Self::columns`], in order, with the times
    /// read as Unix seconds (`UNIX_TIMESTAMP`, in the session's time zone,
    /// which the snapshot sets to UTC).
    pub fn select(self) -> String {
        let columns: Vec<String> = self
            .columns()
            .iter()
            .map(|&c| match self.is_time(c) {
                true => format!("UNIX_TIMESTAMP({c})"),
                false => c.to_string(),
            })
            .collect();
        format!("SELECT {} FROM {}", columns.join(", "), self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_reads_the_columns_in_order() {
        assert_eq!(
            Table::Sessions.select(),
            "SELECT session_id, user_id, ip_address, user_agent, UNIX_TIMESTAMP(created_at), \
             UNIX_TIMESTAMP(expires_at), UNIX_TIMESTAMP(last_activity_at) FROM user_sessions"
        );
        assert_eq!(
            Table::Attributes.select(),
            "SELECT session_id, attribute_key, attribute_value FROM session_data"
        );
        for table in Table::ALL {
            assert_eq!(Table::from_name(table.name()), Some(table));
        }
    }
}
