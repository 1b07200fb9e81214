//! Which `ALTER TABLE` operations on a source table the model can follow.

use sqlparser::ast::{AlterColumnOperation, AlterTableOperation};

use super::Statement;
use crate::model::Table;

/// `ALTER TABLE` of a source table: followed when each operation is known
/// to keep every stored value the model reads; otherwise it cannot be
/// applied exactly (the server converts or removes stored values without
/// logging rows: a column retyped, a partition dropped).
pub(super) fn alter_table(table: Table, operations: &[AlterTableOperation]) -> Statement {
    use AlterTableOperation as Op;
    let reads = |column: &str| {
        table
            .columns()
            .iter()
            .any(|c| c.eq_ignore_ascii_case(column))
    };
    for op in operations {
        let touched = match op {
            Op::AddColumn { .. }
            | Op::AddConstraint { .. }
            | Op::DropConstraint { .. }
            | Op::DropPrimaryKey { .. }
            | Op::DropForeignKey { .. }
            | Op::DropIndex { .. }
            | Op::RenameConstraint { .. }
            | Op::ValidateConstraint { .. }
            | Op::Algorithm { .. }
            | Op::Lock { .. }
            | Op::AutoIncrement { .. }
            | Op::AddPartitions { .. }
            | Op::RenamePartitions { .. } => None,
            AlterTableOperation::DropColumn { column_names, .. } => column_names
                .iter()
                .find(|c| reads(&c.value))
                .map(|c| ("dropped", c)),
            AlterTableOperation::RenameColumn {
                old_column_name, ..
            } => reads(&old_column_name.value).then_some(("renamed", old_column_name)),
            AlterTableOperation::ChangeColumn { old_name, .. } => {
                reads(&old_name.value).then_some(("changed", old_name))
            }
            AlterTableOperation::ModifyColumn { col_name, .. } => {
                reads(&col_name.value).then_some(("changed", col_name))
            }
            AlterTableOperation::AlterColumn { column_name, op } => {
                let keeps_values = matches!(
                    op,
                    AlterColumnOperation::SetDefault { .. } | AlterColumnOperation::DropDefault
                );
                (!keeps_values && reads(&column_name.value)).then_some(("changed", column_name))
            }
            AlterTableOperation::RenameTable { .. } => {
                return Statement::Unappliable {
                    table,
                    what: "ALTER TABLE ... RENAME of a source table".into(),
                }
            }
            other => {
                return Statement::Unappliable {
                    table,
                    what: format!("ALTER TABLE with `{other}`, which may change stored rows"),
                }
            }
        };
        if let Some((how, column)) = touched {
            return Statement::Unappliable {
                table,
                what: format!(
                    "ALTER TABLE: column `{}`, which the model reads, {how}",
                    column.value
                ),
            };
        }
    }
    Statement::Reshape
}
