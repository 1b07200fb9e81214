//! What the replicator needs of the source server, decided from its settings.

use super::Flavor;
use crate::error::{Error, Result};
use crate::model::Table;

/// The server settings the prerequisite check looks at.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub version: String,
    pub flavor: Flavor,
    pub log_bin: bool,
    pub binlog_format: String,
    pub binlog_row_image: String,
    pub server_id: u32,
    pub database: String,
    /// Tables present in the configured database.
    pub tables: Vec<String>,
}

/// Checks the settings; each problem is one line naming the setting and the fix.
pub fn check_settings(s: &ServerSettings) -> Result<()> {
    let mut problems = Vec::new();
    if !s.log_bin {
        problems.push(
            "binary logging is off on the MySQL server (log_bin=OFF): start the server with \
             log_bin enabled, binlog_format=ROW and binlog_row_image=FULL"
                .to_string(),
        );
    }
    if !s.binlog_format.eq_ignore_ascii_case("ROW") {
        problems.push(format!(
            "binlog_format is {} on the MySQL server; the replicator needs ROW: set \
             binlog_format=ROW in the server's configuration and restart it",
            display(&s.binlog_format)
        ));
    }
    if !s.binlog_row_image.eq_ignore_ascii_case("FULL") {
        problems.push(format!(
            "binlog_row_image is {} on the MySQL server; the replicator needs FULL: set \
             binlog_row_image=FULL in the server's configuration and restart it",
            display(&s.binlog_row_image)
        ));
    }
    for table in Table::ALL.map(Table::name) {
        if !s.tables.iter().any(|t| t.eq_ignore_ascii_case(table)) {
            problems.push(format!(
                "table `{db}`.`{table}` is missing, or the account may not read it: load \
                 sql/schema.sql into database `{db}`, point MYSQL_URL at the database that holds \
                 the session tables, or GRANT SELECT ON `{db}`.* to the account",
                db = s.database
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Prerequisite(problems.join("\n")))
    }
}

fn display(value: &str) -> &str {
    if value.is_empty() {
        "unset"
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> ServerSettings {
        ServerSettings {
            version: "10.11.6-MariaDB".into(),
            flavor: Flavor::MariaDb,
            log_bin: true,
            binlog_format: "ROW".into(),
            binlog_row_image: "FULL".into(),
            server_id: 1,
            database: "app".into(),
            tables: Table::ALL.map(|t| t.name().to_string()).to_vec(),
        }
    }

    fn problem(s: ServerSettings) -> String {
        check_settings(&s).unwrap_err().to_string()
    }

    #[test]
    fn accepts_a_well_configured_server() {
        check_settings(&good()).unwrap();
    }

    #[test]
    fn names_each_wrong_setting() {
        let msg = problem(ServerSettings {
            binlog_format: "MIXED".into(),
            ..good()
        });
        assert!(
            msg.contains("binlog_format is MIXED") && msg.contains("binlog_format=ROW"),
            "{msg}"
        );
        let msg = problem(ServerSettings {
            binlog_row_image: "MINIMAL".into(),
            ..good()
        });
        assert!(
            msg.contains("binlog_row_image is MINIMAL") && msg.contains("FULL"),
            "{msg}"
        );
        let msg = problem(ServerSettings {
            log_bin: false,
            ..good()
        });
        assert!(msg.contains("log_bin=OFF"), "{msg}");
    }

    #[test]
    fn names_missing_tables() {
        let msg = problem(ServerSettings {
            tables: vec!["users".into()],
            ..good()
        });
        assert_eq!(msg.lines().count(), 3, "{msg}");
        assert!(msg.contains("`app`.`session_data` is missing"), "{msg}");
    }
}
