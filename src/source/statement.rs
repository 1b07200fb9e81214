//! What a statement logged as text (a query event) means for the four
//! tables.
//!
//! The server logs as text: transaction control (`BEGIN`, `COMMIT`,
//! savepoints, XA), DDL (`TRUNCATE` included), and, from a session that
//! switched to `binlog_format=STATEMENT` or `MIXED`, DML itself. Control is
//! written by the server in a few fixed forms and read here by keyword; the
//! rest is parsed with `sqlparser`'s MySQL dialect and sorted into what the
//! replicator can follow exactly (a `TRUNCATE`, a column added) and what it
//! cannot (statement-format DML on a source table, a source table dropped or
//! renamed, a column the model reads dropped, renamed or retyped). A
//! statement the parser cannot read that names a source table counts as
//! touching it: the replicator stops rather than guess.

use sqlparser::ast::{
    FromTable, ObjectName, ObjectNamePart, ObjectType, Statement as Ast, TableFactor, TableObject,
    TableWithJoins, UpdateTableFromKind,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::model::{Table, Xid};

mod alter;
mod xid;

use alter::alter_table;

/// A statement, as the binlog's reader needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Statement {
    Begin,
    Commit,
    Rollback,
    Savepoint(String),
    RollbackToSavepoint(String),
    ReleaseSavepoint(String),
    /// `XA START`, `XA END`: framing of an XA transaction's rows.
    XaFrame,
    XaCommit(Xid),
    XaRollback(Xid),
    /// Empties one of the four tables.
    Truncate(Table),
    /// Changes one of the four tables' shape in a way the model follows
    /// (a column added, an index dropped): column names must be read again.
    Reshape,
    /// Changes one of the four tables in a way that cannot be applied
    /// exactly.
    Unappliable {
        table: Table,
        what: String,
    },
    /// Changes none of the four tables.
    Unrelated,
}

/// Classifies a query event's text. `schema`: the event's default
/// database; `database`: the one the replicator watches.
pub fn classify(text: &str, schema: &str, database: &str) -> Statement {
    let body = strip_leading_comments(text);
    let words: Vec<String> = body
        .split_whitespace()
        .take(3)
        .map(|w| w.trim_end_matches(';').to_ascii_uppercase())
        .collect();
    let word = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    match (word(0), word(1)) {
        ("BEGIN", "") | ("START", "TRANSACTION") => return Statement::Begin,
        ("COMMIT", _) => return Statement::Commit,
        ("ROLLBACK", "") => return Statement::Rollback,
        ("ROLLBACK", "TO") => return Statement::RollbackToSavepoint(savepoint_name(body, 2)),
        ("ROLLBACK", "WORK") if word(2).is_empty() => return Statement::Rollback,
        ("SAVEPOINT", _) => return Statement::Savepoint(savepoint_name(body, 1)),
        ("RELEASE", "SAVEPOINT") => return Statement::ReleaseSavepoint(savepoint_name(body, 2)),
        ("XA", "START" | "BEGIN" | "END" | "PREPARE") => return Statement::XaFrame,
        ("XA", "COMMIT") => {
            let rest = after_words(body, 2);
            let rest = strip_suffix_ci(rest.trim(), "ONE PHASE").unwrap_or(rest);
            return xid_statement(rest, Statement::XaCommit);
        }
        ("XA", "ROLLBACK") => return xid_statement(after_words(body, 2), Statement::XaRollback),
        _ => {}
    }
    let watch = Watch { schema, database };
    match Parser::parse_sql(&MySqlDialect {}, body) {
        Ok(statements) => statements
            .iter()
            .map(|s| watch.statement(s))
            .find(|s| *s != Statement::Unrelated)
            .unwrap_or(Statement::Unrelated),
        Err(_) => watch.unparsed(body, word(0)),
    }
}

fn xid_statement(text: &str, make: fn(Xid) -> Statement) -> Statement {
    match Xid::parse(text) {
        Some(xid) => make(xid),
        // The server never logs such a form; nothing of ours is named.
        None => Statement::Unrelated,
    }
}

/// The tables of the four, and whether a name is one of them.
struct Watch<'a> {
    schema: &'a str,
    database: &'a str,
}

impl Watch<'_> {
    /// The source table a name denotes, if any (names compare without
    /// regard to case: a false stop is better than a missed change).
    fn table(&self, name: &ObjectName) -> Option<Table> {
        let parts: Vec<&str> = name
            .0
            .iter()
            .map(|p| match p {
                ObjectNamePart::Identifier(ident) => ident.value.as_str(),
                ObjectNamePart::Function(_) => "",
            })
            .collect();
        let (db, table) = match parts.as_slice() {
            [table] => (self.schema, *table),
            [.., db, table] => (*db, *table),
            [] => return None,
        };
        if !db.eq_ignore_ascii_case(self.database) {
            return None;
        }
        Table::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(table))
    }

    /// Whether a database name is the watched one.
    fn is_watched_database(&self, name: &ObjectName) -> bool {
        match name.0.last() {
            Some(ObjectNamePart::Identifier(ident)) => {
                ident.value.eq_ignore_ascii_case(self.database)
            }
            _ => false,
        }
    }

    fn first_of<'n>(&self, names: impl IntoIterator<Item = &'n ObjectName>) -> Option<Table> {
        names.into_iter().find_map(|n| self.table(n))
    }

    fn statement(&self, statement: &Ast) -> Statement {
        let unappliable = |table, what: &str| Statement::Unappliable {
            table,
            what: what.to_string(),
        };
        match statement {
            Ast::Insert(insert) => {
                let TableObject::TableName(name) = &insert.table else {
                    return Statement::Unrelated;
                };
                match self.table(name) {
                    Some(t) if insert.replace_into => unappliable(
                        t,
                        "a REPLACE logged as a statement (binlog_format=STATEMENT or MIXED)",
                    ),
                    Some(t) => unappliable(
                        t,
                        "an INSERT logged as a statement (binlog_format=STATEMENT or MIXED)",
                    ),
                    None => Statement::Unrelated,
                }
            }
            Ast::Update(update) => {
                let mut names = relations(&update.table);
                if let Some(
                    UpdateTableFromKind::BeforeSet(from) | UpdateTableFromKind::AfterSet(from),
                ) = &update.from
                {
                    names.extend(from.iter().flat_map(relations));
                }
                match self.first_of(names) {
                    Some(t) => unappliable(
                        t,
                        "an UPDATE logged as a statement (binlog_format=STATEMENT or MIXED)",
                    ),
                    None => Statement::Unrelated,
                }
            }
            Ast::Delete(delete) => {
                let mut names: Vec<&ObjectName> = delete.tables.iter().collect();
                let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) =
                    &delete.from;
                names.extend(from.iter().flat_map(relations));
                if let Some(using) = &delete.using {
                    names.extend(using.iter().flat_map(relations));
                }
                match self.first_of(names) {
                    Some(t) => unappliable(
                        t,
                        "a DELETE logged as a statement (binlog_format=STATEMENT or MIXED)",
                    ),
                    None => Statement::Unrelated,
                }
            }
            Ast::LoadData { table_name, .. } => match self.table(table_name) {
                Some(t) => unappliable(t, "a LOAD DATA logged as a statement"),
                None => Statement::Unrelated,
            },
            Ast::Truncate(truncate) => {
                match self.first_of(truncate.table_names.iter().map(|t| &t.name)) {
                    Some(t) => Statement::Truncate(t),
                    None => Statement::Unrelated,
                }
            }
            Ast::Drop {
                object_type: ObjectType::Table,
                names,
                temporary: false,
                ..
            } => match self.first_of(names) {
                Some(t) => unappliable(t, "DROP TABLE of a source table"),
                None => Statement::Unrelated,
            },
            Ast::RenameTable(renames) => {
                let names = renames.iter().flat_map(|r| [&r.old_name, &r.new_name]);
                match self.first_of(names) {
                    Some(t) => unappliable(t, "RENAME TABLE of a source table"),
                    None => Statement::Unrelated,
                }
            }
            Ast::AlterTable(alter) => match self.table(&alter.name) {
                Some(t) => alter_table(t, &alter.operations),
                None => Statement::Unrelated,
            },
            // MariaDB's CREATE OR REPLACE drops the table first; a CREATE
            // ... SELECT into an existing table logged as a statement fills it.
            Ast::CreateTable(create) if create.or_replace || create.query.is_some() => {
                match self.table(&create.name) {
                    Some(t) => unappliable(
                        t,
                        "CREATE TABLE of a source table that replaces or fills it",
                    ),
                    None => Statement::Unrelated,
                }
            }
            Ast::Drop {
                object_type: ObjectType::Database | ObjectType::Schema,
                names,
                ..
            } if names.iter().any(|n| self.is_watched_database(n)) => {
                unappliable(Table::Users, "DROP DATABASE of the watched database")
            }
            _ => Statement::Unrelated,
        }
    }

    /// A statement the parser could not read: maintenance that never
    /// changes rows is unrelated; an `ALTER TABLE` of a source table that
    /// neither names a column the model reads nor holds a word of the
    /// forms that change or remove stored values (a rebuild: `ENGINE=`,
    /// `FORCE`, `ORDER BY`) changes its shape only; anything else that
    /// names one of the four tables counts as changing it.
    fn unparsed(&self, body: &str, verb: &str) -> Statement {
        const NO_ROW_CHANGES: [&str; 6] =
            ["ANALYZE", "OPTIMIZE", "CHECK", "GRANT", "REVOKE", "FLUSH"];
        const CHANGES_VALUES: [&str; 12] = [
            "DROP",
            "TRUNCATE",
            "EXCHANGE",
            "DISCARD",
            "IMPORT",
            "CONVERT",
            "CHARACTER",
            "CHARSET",
            "COLLATE",
            "RENAME",
            "CHANGE",
            "MODIFY",
        ];
        if NO_ROW_CHANGES.contains(&verb) {
            return Statement::Unrelated;
        }
        let Some((table, words)) = self.named_table(body) else {
            return Statement::Unrelated;
        };
        let alter_keeps_values = verb == "ALTER"
            && !words.iter().any(|w| {
                CHANGES_VALUES.iter().any(|k| w.eq_ignore_ascii_case(k))
                    || table.columns().iter().any(|c| w.eq_ignore_ascii_case(c))
            });
        match alter_keeps_values {
            true => Statement::Reshape,
            false => Statement::Unappliable {
                table,
                what: format!(
                    "a statement the replicator cannot read ({verb} ...) that names a source table"
                ),
            },
        }
    }

    /// The first source table named anywhere in the statement's tokens,
    /// and the statement's words.
    fn named_table(&self, body: &str) -> Option<(Table, Vec<String>)> {
        let tokens = Tokenizer::new(&MySqlDialect {}, body).tokenize().ok()?;
        let words: Vec<Option<&str>> = tokens
            .iter()
            .filter(|t| !matches!(t, Token::Whitespace(_)))
            .map(|t| match t {
                Token::Word(w) => Some(w.value.as_str()),
                _ => None,
            })
            .collect();
        let dotted = |i: usize| {
            tokens
                .iter()
                .filter(|t| !matches!(t, Token::Whitespace(_)))
                .nth(i)
                .is_some_and(|t| *t == Token::Period)
        };
        let table = words.iter().enumerate().find_map(|(i, word)| {
            let word = (*word)?;
            // `db.table`: the word before the period names the database.
            let db = match i.checked_sub(2) {
                Some(at) if dotted(i - 1) => words[at]?,
                _ => self.schema,
            };
            if i + 1 < words.len() && dotted(i + 1) {
                return None; // a database (or table) name followed by a period
            }
            let name = ObjectName::from(vec![
                sqlparser::ast::Ident::new(db),
                sqlparser::ast::Ident::new(word),
            ]);
            self.table(&name)
        })?;
        Some((
            table,
            words.iter().flatten().map(|w| w.to_string()).collect(),
        ))
    }
}

/// The table names of a `FROM`-like clause, joins included.
fn relations(table: &TableWithJoins) -> Vec<&ObjectName> {
    let mut names = Vec::new();
    for factor in std::iter::once(&table.relation).chain(table.joins.iter().map(|j| &j.relation)) {
        match factor {
            TableFactor::Table { name, .. } => names.push(name),
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => names.extend(relations(table_with_joins)),
            _ => {}
        }
    }
    names
}

/// The text after the first `n` words.
fn after_words(text: &str, n: usize) -> &str {
    let mut rest = text.trim_start();
    for _ in 0..n {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        rest = rest[end..].trim_start();
    }
    rest
}

/// A savepoint's name: the word after the first `n` words (and after
/// `SAVEPOINT`, where `ROLLBACK TO SAVEPOINT` spells it), unquoted.
fn savepoint_name(text: &str, n: usize) -> String {
    let mut rest = after_words(text, n);
    if rest.len() > 9
        && rest[..9].eq_ignore_ascii_case("SAVEPOINT")
        && rest[9..].starts_with(char::is_whitespace)
    {
        rest = after_words(rest, 1);
    }
    let name = rest.trim().trim_end_matches(';').trim();
    match name.strip_prefix('`').and_then(|n| n.strip_suffix('`')) {
        Some(quoted) => quoted.replace("``", "`"),
        None => name.to_string(),
    }
}

fn strip_suffix_ci<'t>(text: &'t str, suffix: &str) -> Option<&'t str> {
    let at = text.len().checked_sub(suffix.len())?;
    (text.is_char_boundary(at) && text[at..].eq_ignore_ascii_case(suffix)).then(|| &text[..at])
}

/// The statement without the comments that may lead it (`/* ... */`, `#`, `-- `).
fn strip_leading_comments(text: &str) -> &str {
    let mut rest = text.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("/*") {
            // `/*! ... */` and `/*M! ... */` are executable comments: code.
            if r.starts_with('!') || r.starts_with("M!") {
                return rest;
            }
            match r.find("*/") {
                Some(end) => rest = r[end + 2..].trim_start(),
                None => return rest,
            }
        } else if rest.starts_with('#') || rest.starts_with("-- ") {
            match rest.find('\n') {
                Some(end) => rest = rest[end + 1..].trim_start(),
                None => return "",
            }
        } else {
            return rest;
        }
    }
}

#[cfg(test)]
mod tests;
