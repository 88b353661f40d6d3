//! The database layer shared by everything that speaks SQL, and that knows nothing of clicks:
//! which databases clicktrack speaks (`Dialect`, `DatabaseUrl`), what kind of failure each
//! one's errors are (`classify`, a table per dialect: a dialect without one does not
//! compile), the text form of times, how SQLite files are opened, and one way to run a
//! statement on whichever pool is in use (`on_pool!`), and the member packs' format, which the
//! store writes and the stats read. The store, the local journal and the stats reader depend
//! on this module, not on each other.

mod classify;
pub mod member_pack;
mod mysql;
mod postgres;
mod sqlite;
mod time;
mod url;

use sqlx::mysql::MySqlPool;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

pub use classify::{classify, sqlite_primary_code};
pub use mysql::mysql_options;
pub use postgres::{numbered, postgres_options};
pub use sqlite::{BUSY_TIMEOUT as SQLITE_BUSY_TIMEOUT, sqlite_reader, sqlite_writer};
pub use time::{db_time, parse_db_time};
pub use url::{DatabaseUrl, DatabaseUrlError};

/// The SQL dialects clicktrack speaks. Each has its error table (`classify`) and, in the
/// store and the stats reader, its statements: a new one is added here first, and every
/// `match` on it then says what is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    /// MySQL 8 or MariaDB.
    Mysql,
    /// PostgreSQL 13 or later.
    Postgres,
}

/// How the caller should react to a failed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Lock contention or a busy database: retry the whole batch.
    Transient,
    /// The database refused a row (constraint, range, type): bisect to find it.
    Refused,
    /// The database cannot be reached or written (I/O, disk full, gone): retry, then give up.
    Unavailable,
    /// No answer in time (a hung connection, a stalled server): retry, then give up. The
    /// abandoned attempt may still commit, so whatever follows must look its ids up.
    TimedOut,
    /// Anything else: a bug or a misconfiguration; not retried.
    Other,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Transient => "transient",
            ErrorKind::Refused => "refused",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::TimedOut => "timeout",
            ErrorKind::Other => "other",
        }
    }
}

/// A pool of either dialect, borrowed: what `on_pool!` runs a statement on.
#[derive(Debug, Clone, Copy)]
pub enum PoolRef<'a> {
    Sqlite(&'a SqlitePool),
    Mysql(&'a MySqlPool),
    Postgres(&'a PgPool),
}

/// Run `$body` with `$pool` bound to the pool of whichever dialect is in use and `$sql` to
/// that dialect's table of statements (`$sqlite`, `$mysql` or `$postgres`): the SQL is written
/// once per dialect, next to the code that needs it, and the code that runs it once.
macro_rules! on_pool {
    ($pools:expr, $pool:ident, $sql:ident in ($sqlite:expr, $mysql:expr, $postgres:expr) => $body:expr) => {
        match $pools {
            $crate::db::PoolRef::Sqlite($pool) => {
                #[allow(unused_variables)]
                let $sql = $sqlite;
                $body
            }
            $crate::db::PoolRef::Mysql($pool) => {
                #[allow(unused_variables)]
                let $sql = $mysql;
                $body
            }
            $crate::db::PoolRef::Postgres($pool) => {
                #[allow(unused_variables)]
                let $sql = $postgres;
                $body
            }
        }
    };
}
pub(crate) use on_pool;
