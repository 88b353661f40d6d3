//! How clicktrack opens an SQLite file, for the store, an earlier release's journal and the stats
//! reader alike: a writer creates the file, uses WAL and syncs every commit (a 302 may wait on
//! it); a reader never writes; both wait for another process's lock rather than fail at once.
//! sqlx's slow-statement warning (several lines of SQL per statement) is off everywhere: a
//! slow write shows in its duration metric, and a failure is logged once where it is handled.

use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

/// How long a statement waits for another connection's write lock before failing as busy.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// `options` for a connection that writes.
pub fn sqlite_writer(options: SqliteConnectOptions) -> SqliteConnectOptions {
    options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT)
        .disable_statement_logging()
}

/// Page cache of a reading connection, in KiB (SQLite's default is 2 MiB): a report's packs
/// and rollup rows of a long window stay cached between requests (at 10,000,000 clicks, 90
/// days of one campaign's packs are 10 MB).
const READER_CACHE_KIB: u32 = 16 * 1024;

/// `options` for a connection that only reads. Sorts and groupings stay in memory (SQLite's
/// default writes them to a temporary file: it halved a report's slowest grouping; they are
/// as large as a window's rollup rows, never the log).
pub fn sqlite_reader(options: SqliteConnectOptions) -> SqliteConnectOptions {
    options
        .read_only(true)
        .busy_timeout(BUSY_TIMEOUT)
        .pragma("temp_store", "memory")
        .pragma("cache_size", format!("-{READER_CACHE_KIB}"))
        .disable_statement_logging()
}
