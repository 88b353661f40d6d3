//! How clicktrack opens a PostgreSQL connection, for the store and the stats reader alike, and
//! the one place where SQL written with `?` (the statements every dialect shares) gets
//! PostgreSQL's numbered parameters.

use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

/// `options` for any of clicktrack's PostgreSQL connections: named in `pg_stat_activity`, times
/// in UTC (a `timestamptz` column of the marketing app's reads and writes as UTC, like every
/// time clicktrack binds), the server's notices ("already exists, skipping") kept out of the
/// log, and sqlx's slow-statement warning off, as for the other dialects.
pub fn postgres_options(options: PgConnectOptions) -> PgConnectOptions {
    options
        .application_name("clicktrack")
        .options([("TimeZone", "UTC"), ("client_min_messages", "warning")])
        .disable_statement_logging()
}

/// `sql` with each `?` parameter replaced by `$1`, `$2`, ... in order; a `?` inside a quoted
/// literal is text and stays.
pub fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let (mut n, mut quoted) = (0, false);
    for c in sql.chars() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c == '?' && !quoted {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_marks_become_numbered_parameters() {
        assert_eq!(
            numbered("UPDATE t SET a = ? WHERE b = ? AND c = ?"),
            "UPDATE t SET a = $1 WHERE b = $2 AND c = $3"
        );
        assert_eq!(numbered("SELECT 1"), "SELECT 1");
        assert_eq!(
            numbered("SELECT 'a?b', 'it''s?' WHERE c = ?"),
            "SELECT 'a?b', 'it''s?' WHERE c = $1"
        );
    }
}
