//! What kind of failure a sqlx error is, decided in one place for every user of sqlx: the
//! stores, the local journal and the stats reader. Retrying, spilling to the journal, marking
//! the store down and the `error_type` of every metric hang on this answer, so two copies
//! would drift apart. The database codes are a table per dialect (a new `Dialect` does not
//! compile until it has one); an error from a driver clicktrack does not speak is `Other`,
//! never read as another dialect's. Connection-level failures are the same for all.

use sqlx::error::DatabaseError;
use sqlx::mysql::MySqlDatabaseError;
use sqlx::postgres::PgDatabaseError;
use sqlx::sqlite::SqliteError;

use super::{Dialect, ErrorKind};

/// The kind of `error`, and the database's own code when it gave one (a metric label for
/// retries: `1213`, `5`, ...).
pub fn classify(error: &sqlx::Error) -> (ErrorKind, Option<String>) {
    match error {
        sqlx::Error::Database(db) => match dialect_of(db.as_ref()) {
            Some(Dialect::Mysql) => {
                let number = db
                    .try_downcast_ref::<MySqlDatabaseError>()
                    .map_or(0, MySqlDatabaseError::number);
                (mysql_kind(number), Some(number.to_string()))
            }
            Some(Dialect::Sqlite) => {
                let code = sqlite_code(error);
                let kind = code.map_or(ErrorKind::Other, |c| sqlite_kind(c & 0xff));
                (kind, code.map(|c| c.to_string()))
            }
            Some(Dialect::Postgres) => {
                let code = db.code().map(|c| c.into_owned());
                let kind = code.as_deref().map_or(ErrorKind::Other, postgres_kind);
                (kind, code)
            }
            None => (ErrorKind::Other, db.code().map(|c| c.into_owned())),
        },
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => (ErrorKind::Unavailable, None),
        _ => (ErrorKind::Other, None),
    }
}

/// Which of clicktrack's dialects made this database error; `None` for any other driver.
fn dialect_of(db: &dyn DatabaseError) -> Option<Dialect> {
    if db.try_downcast_ref::<MySqlDatabaseError>().is_some() {
        Some(Dialect::Mysql)
    } else if db.try_downcast_ref::<SqliteError>().is_some() {
        Some(Dialect::Sqlite)
    } else if db.try_downcast_ref::<PgDatabaseError>().is_some() {
        Some(Dialect::Postgres)
    } else {
        None
    }
}

/// SQLite's primary result code, for `classify` and for callers that need one code
/// (the journal tells a full disk apart).
pub fn sqlite_primary_code(error: &sqlx::Error) -> Option<i32> {
    sqlite_code(error).map(|c| c & 0xff)
}

/// SQLite's extended result code; its low byte is the primary code.
fn sqlite_code(error: &sqlx::Error) -> Option<i32> {
    match error {
        sqlx::Error::Database(db) => db.code().and_then(|c| c.parse::<i32>().ok()),
        _ => None,
    }
}

/// MySQL / MariaDB error numbers.
fn mysql_kind(number: u16) -> ErrorKind {
    match number {
        // deadlock, lock wait timeout, record changed (MariaDB)
        1213 | 1205 | 1020 => ErrorKind::Transient,
        // foreign key, duplicate, too long, out of range, bad value, truncated, NULL, no
        // default (an old column clicktrack does not fill), bad datetime, CHECK (MariaDB 4025,
        // MySQL 3819), SIGNAL
        1452 | 1451 | 1062 | 1406 | 1264 | 1366 | 1265 | 1048 | 1364 | 1292 | 4025 | 3819
        | 1644 => ErrorKind::Refused,
        // too many connections, shutdown, server gone, lost connection, read-only
        1040 | 1053 | 1927 | 2006 | 2013 | 1290 | 1836 => ErrorKind::Unavailable,
        _ => ErrorKind::Other,
    }
}

/// SQLite primary result codes.
fn sqlite_kind(primary: i32) -> ErrorKind {
    match primary {
        // BUSY, LOCKED
        5 | 6 => ErrorKind::Transient,
        // TOOBIG, CONSTRAINT, MISMATCH, RANGE
        18..=20 | 25 => ErrorKind::Refused,
        // READONLY, IOERR, CORRUPT, FULL, CANTOPEN, NOTADB
        8 | 10 | 11 | 13 | 14 | 26 => ErrorKind::Unavailable,
        _ => ErrorKind::Other,
    }
}

/// PostgreSQL SQLSTATE codes: a few exact ones, then by class (the first two characters).
fn postgres_kind(sqlstate: &str) -> ErrorKind {
    match sqlstate {
        // serialization failure, deadlock, lock not available (lock_timeout), statement
        // cancelled (statement_timeout)
        "40001" | "40P01" | "55P03" | "57014" => ErrorKind::Transient,
        // admin or crash shutdown, cannot connect now, read-only transaction (a standby)
        "57P01" | "57P02" | "57P03" | "25006" => ErrorKind::Unavailable,
        // RAISE EXCEPTION in a trigger: the database refused the row
        "P0001" => ErrorKind::Refused,
        _ => match sqlstate.get(..2) {
            // integrity constraint (unique, foreign key, NOT NULL, CHECK), data exception
            // (too long, out of range, bad text for its type, bad datetime)
            Some("23" | "22") => ErrorKind::Refused,
            // connection exception, insufficient resources (disk full, too many
            // connections), system error (I/O)
            Some("08" | "53" | "58") => ErrorKind::Unavailable,
            _ => ErrorKind::Other,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_are_unavailable_whatever_the_dialect() {
        for e in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::WorkerCrashed,
        ] {
            assert_eq!(classify(&e), (ErrorKind::Unavailable, None));
        }
        assert_eq!(
            classify(&sqlx::Error::RowNotFound),
            (ErrorKind::Other, None)
        );
    }

    #[test]
    fn code_tables() {
        assert_eq!(mysql_kind(1213), ErrorKind::Transient);
        assert_eq!(mysql_kind(1452), ErrorKind::Refused);
        assert_eq!(mysql_kind(2013), ErrorKind::Unavailable);
        assert_eq!(mysql_kind(1146), ErrorKind::Other);
        assert_eq!(sqlite_kind(5), ErrorKind::Transient);
        assert_eq!(sqlite_kind(19), ErrorKind::Refused);
        assert_eq!(sqlite_kind(13), ErrorKind::Unavailable);
        assert_eq!(sqlite_kind(1), ErrorKind::Other);
        assert_eq!(postgres_kind("40P01"), ErrorKind::Transient);
        assert_eq!(postgres_kind("23505"), ErrorKind::Refused);
        assert_eq!(postgres_kind("22001"), ErrorKind::Refused);
        assert_eq!(postgres_kind("08006"), ErrorKind::Unavailable);
        assert_eq!(postgres_kind("53100"), ErrorKind::Unavailable);
        assert_eq!(postgres_kind("42P01"), ErrorKind::Other);
    }
}
