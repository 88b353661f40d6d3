//! Where the local journal lives when `--spool-path` is not given.

use std::path::{Path, PathBuf};

/// The journal used when `--spool-path` is not given. Next to an SQLite database
/// (`data/clicktrack.db` → `data/clicktrack.spool.db`, the name earlier releases used); for
/// MySQL and PostgreSQL in the working directory, named after the dialect, server and database
/// (`clicktrack-mysql-127.0.0.1-3306-shop.spool.db`), so instances of different stores
/// started from one folder never share a journal.
pub fn default_path(database: &crate::db::DatabaseUrl) -> PathBuf {
    match database {
        crate::db::DatabaseUrl::Sqlite(url) => {
            let file = url
                .trim_start_matches("sqlite:")
                .trim_start_matches("//")
                .split('?')
                .next()
                .unwrap_or_default();
            if file.is_empty() {
                return PathBuf::from("clicktrack.spool.db");
            }
            Path::new(file).with_extension("spool.db")
        }
        crate::db::DatabaseUrl::Mysql(url) => server_journal("mysql", url, 3306),
        crate::db::DatabaseUrl::Postgres(url) => server_journal("postgres", url, 5432),
    }
}

/// The default journal of a store on a server: in the working directory, named after the
/// dialect, host, port and database, so two stores never share one.
fn server_journal(dialect: &str, url: &str, default_port: u16) -> PathBuf {
    let parsed = url::Url::parse(url).ok();
    let host = parsed
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let port = parsed
        .as_ref()
        .and_then(|u| u.port())
        .unwrap_or(default_port);
    let db = parsed
        .as_ref()
        .map(|u| u.path().trim_start_matches('/').to_owned())
        .unwrap_or_default();
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    PathBuf::from(format!(
        "clicktrack-{dialect}-{}-{port}-{}.spool.db",
        safe(&host),
        safe(&db)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::DatabaseUrl;

    #[test]
    fn the_default_journal_sits_next_to_the_data_and_differs_per_store() {
        let url = |s| DatabaseUrl::parse(s).expect("valid");
        assert_eq!(
            default_path(&url("sqlite://data/clicktrack.db?mode=rwc")),
            Path::new("data/clicktrack.spool.db")
        );
        assert_eq!(
            default_path(&url("sqlite:///var/lib/ct/clicks")),
            Path::new("/var/lib/ct/clicks.spool.db")
        );
        assert_eq!(
            default_path(&url("mysql://root:pw@localhost/shop")),
            Path::new("clicktrack-mysql-localhost-3306-shop.spool.db")
        );
        assert_eq!(
            default_path(&url("postgres://postgres@db.internal/shop")),
            Path::new("clicktrack-postgres-db.internal-5432-shop.spool.db")
        );
        assert_ne!(
            default_path(&url("sqlite://clicktrack.db")),
            default_path(&url("mysql://root@127.0.0.1:3306/test")),
        );
    }
}
