//! How clicktrack opens a MySQL or MariaDB connection, for the store and the stats reader
//! alike: utf8mb4 (LINE display names and tags hold any character), and sqlx's slow-statement
//! warning off, as for SQLite (`sqlite.rs`).

use sqlx::ConnectOptions;
use sqlx::mysql::MySqlConnectOptions;

/// `options` for any of clicktrack's MySQL connections.
pub fn mysql_options(options: MySqlConnectOptions) -> MySqlConnectOptions {
    options.charset("utf8mb4").disable_statement_logging()
}
