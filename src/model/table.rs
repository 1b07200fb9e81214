//! The four source tables, by name and by the columns the model reads.

/// The four tables, in the order the snapshot reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableRows {
    Users,
    Preferences,
    Sessions,
    Attributes,
}

impl TableRows {
    pub const ALL: [TableRows; 4] = [
        TableRows::Users,
        TableRows::Preferences,
        TableRows::Sessions,
        TableRows::Attributes,
    ];

    pub fn table(self) -> &'static str {
        match self {
            TableRows::Users => "users",
            TableRows::Preferences => "user_preferences",
            TableRows::Sessions => "user_sessions",
            TableRows::Attributes => "session_data",
        }
    }

    /// The table of a binlog event, when it is one of the four.
    pub fn from_table(name: &str) -> Option<TableRows> {
        TableRows::ALL.into_iter().find(|t| t.table() == name)
    }

    /// The columns the model reads, in the order the decoder takes them.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            TableRows::Users => &["user_id", "username", "email"],
            TableRows::Preferences => &["user_id", "theme", "language", "notifications_enabled"],
            TableRows::Sessions => &[
                "session_id",
                "user_id",
                "ip_address",
                "user_agent",
                "created_at",
                "expires_at",
                "last_activity_at",
            ],
            TableRows::Attributes => &["session_id", "attribute_key", "attribute_value"],
        }
    }
}
