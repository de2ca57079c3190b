//! Placeholders of the statements built at run time (multi-row inserts, `IN` lists).
//!
//! SQLite finds a named parameter (`$N`) by a linear search of the statement's parameter
//! names, once when it prepares the statement and again when sqlx binds each value (sqlx asks
//! `sqlite3_bind_parameter_name` for every index), so a statement with n named parameters
//! costs O(n²): a 200-row notification insert has 3,000 of them. Anonymous `?` parameters
//! cost O(1) each, so on SQLite these statements use `?` and PostgreSQL keeps `$1, $2, ...`
//! (it has no anonymous form). Either way the values are bound in the order the
//! placeholders are written.

use super::Backend;

/// Writes the placeholders of one statement, numbered in the order they are written: `?`
/// on SQLite, `$1`, `$2`, ... on PostgreSQL. Bind the values in the same order, one per
/// placeholder written (a value used twice is written and bound twice).
#[derive(Debug)]
pub(super) struct Params {
    backend: Backend,
    written: usize,
}

impl Params {
    /// No placeholder written yet.
    pub(super) fn new(backend: Backend) -> Self {
        Self {
            backend,
            written: 0,
        }
    }

    /// Appends the next placeholder to `sql`.
    pub(super) fn push(&mut self, sql: &mut String) {
        self.written += 1;
        match self.backend {
            Backend::Sqlite => sql.push('?'),
            Backend::Postgres => {
                sql.push('$');
                sql.push_str(&self.written.to_string());
            }
        }
    }

    /// Appends `count` placeholders separated by `", "`.
    pub(super) fn push_list(&mut self, sql: &mut String, count: usize) {
        for i in 0..count {
            if i > 0 {
                sql.push_str(", ");
            }
            self.push(sql);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_gets_anonymous_and_postgres_numbered_placeholders_in_writing_order() {
        for (backend, want) in [
            (Backend::Sqlite, "a = ? AND b IN (?, ?, ?)"),
            (Backend::Postgres, "a = $1 AND b IN ($2, $3, $4)"),
        ] {
            let mut params = Params::new(backend);
            let mut sql = String::from("a = ");
            params.push(&mut sql);
            sql.push_str(" AND b IN (");
            params.push_list(&mut sql, 3);
            sql.push(')');
            assert_eq!(sql, want);
        }
    }
}
