//! `--database-url`: which database, in which dialect, and how it is shown (never with its
//! password).

use std::fmt;

use super::Dialect;

/// The database behind `--database-url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(String),
    /// MySQL 8 or MariaDB (`mysql://` or `mariadb://`).
    Mysql(String),
    /// PostgreSQL 13+ (`postgres://` or `postgresql://`).
    Postgres(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatabaseUrlError {
    #[error(
        "unsupported scheme in {0:?} (supported: sqlite://PATH, mysql://USER@HOST/DB, \
         postgres://USER@HOST/DB)"
    )]
    UnsupportedScheme(String),
    #[error("{0:?} names no database file")]
    MissingPath(String),
    #[error("{0:?} names no database (expected {1}://USER[:PASSWORD]@HOST[:PORT]/DATABASE)")]
    MissingDatabase(String, &'static str),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<DatabaseUrl, DatabaseUrlError> {
        match url.split_once(':') {
            Some(("sqlite", rest)) => {
                let path = rest.trim_start_matches("//");
                if path.is_empty() || path.starts_with(":memory:") || rest.starts_with(":memory:") {
                    // An in-memory database would vanish with its connection.
                    return Err(DatabaseUrlError::MissingPath(url.to_owned()));
                }
                Ok(DatabaseUrl::Sqlite(url.to_owned()))
            }
            Some(("mysql" | "mariadb", rest)) => {
                names_a_database(url, "mysql")?;
                Ok(DatabaseUrl::Mysql(format!("mysql:{rest}")))
            }
            Some(("postgres" | "postgresql", _)) => {
                names_a_database(url, "postgres")?;
                Ok(DatabaseUrl::Postgres(url.to_owned()))
            }
            _ => Err(DatabaseUrlError::UnsupportedScheme(redact(url))),
        }
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(url) => f.write_str(url),
            DatabaseUrl::Mysql(url) | DatabaseUrl::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

/// A server URL must name its database: clicktrack never picks one.
fn names_a_database(url: &str, scheme: &'static str) -> Result<(), DatabaseUrlError> {
    let missing = || DatabaseUrlError::MissingDatabase(redact(url), scheme);
    let parsed = url::Url::parse(url).map_err(|_| missing())?;
    if parsed.path().trim_start_matches('/').is_empty() {
        return Err(missing());
    }
    Ok(())
}

/// A URL with any password removed, for messages and logs.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Only fails for URLs that cannot have a password, which this one has.
            let _ignored = parsed.set_password(Some("***"));
            parsed.into()
        }
        _ => url.to_owned(),
    }
}

impl DatabaseUrl {
    pub fn dialect(&self) -> Dialect {
        match self {
            DatabaseUrl::Sqlite(_) => Dialect::Sqlite,
            DatabaseUrl::Mysql(_) => Dialect::Mysql,
            DatabaseUrl::Postgres(_) => Dialect::Postgres,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert!(matches!(
            DatabaseUrl::parse("sqlite://clicktrack.db"),
            Ok(DatabaseUrl::Sqlite(_))
        ));
        assert!(DatabaseUrl::parse("sqlite::memory:").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        assert!(matches!(
            DatabaseUrl::parse("mariadb://root@127.0.0.1:3306/test"),
            Ok(DatabaseUrl::Mysql(u)) if u == "mysql://root@127.0.0.1:3306/test"
        ));
        assert!(DatabaseUrl::parse("mysql://root@127.0.0.1:3306").is_err());
        let shown = DatabaseUrl::parse("mysql://u:secret@h/db")
            .expect("valid")
            .to_string();
        assert!(!shown.contains("secret"), "{shown}");
        assert!(matches!(
            DatabaseUrl::parse("postgresql://postgres@127.0.0.1:5432/test"),
            Ok(DatabaseUrl::Postgres(_))
        ));
        let err = DatabaseUrl::parse("postgres://u:secret@h").expect_err("no database");
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(err.to_string().contains("postgres://USER"), "{err}");
        let err = DatabaseUrl::parse("oracle://u:secret@h/db").expect_err("unsupported");
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
