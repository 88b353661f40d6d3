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

/// `options` for a connection that only reads.
pub fn sqlite_reader(options: SqliteConnectOptions) -> SqliteConnectOptions {
    options
        .read_only(true)
        .busy_timeout(BUSY_TIMEOUT)
        .disable_statement_logging()
}
