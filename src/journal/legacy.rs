//! The journal of earlier releases: an SQLite file (`spooled_records`) at `--spool-path`.
//!
//! This release keeps its journal in segment files, in a directory at the same path. On the
//! first open after an upgrade the old file's records are copied into a new directory beside
//! it (same seqs, same order, same store binding; rows it had set aside go to `unreadable/`),
//! the directory is synced, the old file deleted and the directory renamed into its place. A
//! crash at any point leaves either the old file (the copy is made again from the start) or
//! the finished directory under its temporary name (renamed at the next open): never both
//! half-used, never a record twice.

use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use time::OffsetDateTime;

use super::frame::{self, KIND_RECORD};
use super::segments::{segment_path, set_aside, sync_dir};
use super::{AppendReason, JournalError, JournalStatus, format};
use crate::db::sqlite_writer;

/// Rows copied per query.
const CHUNK: i64 = 10_000;

/// Where an upgrade builds the new journal before it takes the old file's place.
pub fn upgrade_dir(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".upgrade");
    PathBuf::from(name)
}

fn sqlite_err(path: &Path, operation: &'static str) -> impl FnOnce(sqlx::Error) -> JournalError {
    let path = path.display().to_string();
    move |source| JournalError::Sqlite {
        operation,
        path,
        source,
    }
}

fn io_err(path: &Path, operation: &'static str) -> impl FnOnce(io::Error) -> JournalError {
    let path = path.display().to_string();
    move |source| JournalError::Io {
        operation,
        path,
        source,
    }
}

async fn connect(path: &Path) -> Result<SqliteConnection, JournalError> {
    let options = sqlite_writer(SqliteConnectOptions::new().filename(path));
    SqliteConnection::connect_with(&options)
        .await
        .map_err(sqlite_err(path, "open the journal of an earlier release"))
}

/// Close the old file's connection; a failure only costs a warning (it was read, nothing
/// was written through it).
async fn close(conn: SqliteConnection, path: &Path) {
    if let Err(e) = conn.close().await {
        tracing::warn!(path = %path.display(), error = %e, "closing the journal of an earlier release");
    }
}

/// `spool status` of a file not upgraded yet (no `serve` has opened it since).
pub async fn status(path: &Path) -> Result<JournalStatus, JournalError> {
    let mut conn = connect(path).await?;
    let err = || sqlite_err(path, "status");
    let (depth,): (i64,) = sqlx::query_as("SELECT count(*) FROM spooled_records")
        .fetch_one(&mut conn)
        .await
        .map_err(err())?;
    let oldest: Option<(String, String)> =
        sqlx::query_as("SELECT spooled_at, record FROM spooled_records ORDER BY seq LIMIT 1")
            .fetch_optional(&mut conn)
            .await
            .map_err(err())?;
    let unreadable: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = 'unreadable_records'")
            .fetch_one(&mut conn)
            .await
            .map_err(err())?;
    let unreadable: i64 = if unreadable > 0 {
        sqlx::query_scalar("SELECT count(*) FROM unreadable_records")
            .fetch_one(&mut conn)
            .await
            .map_err(err())?
    } else {
        0
    };
    let store = binding(&mut conn, path).await?.map(|(_, display)| display);
    close(conn, path).await;
    let (oldest_spooled_at, oldest_received_at) = match oldest {
        Some((at, json)) => (
            Some(at),
            format::decode(&json).ok().map(|r| r.received_at()),
        ),
        None => (None, None),
    };
    Ok(JournalStatus {
        depth: u64::try_from(depth).unwrap_or(0),
        oldest_spooled_at,
        oldest_received_at,
        unreadable: u64::try_from(unreadable).unwrap_or(0),
        store,
    })
}

/// The store the old file was bound to (id, display), if it recorded one.
async fn binding(
    conn: &mut SqliteConnection,
    path: &Path,
) -> Result<Option<(String, String)>, JournalError> {
    let has_meta: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = 'journal_meta'")
            .fetch_one(&mut *conn)
            .await
            .map_err(sqlite_err(path, "read the store binding"))?;
    if has_meta == 0 {
        return Ok(None);
    }
    sqlx::query_as(
        "SELECT (SELECT value FROM journal_meta WHERE key = 'store_id'), \
                COALESCE((SELECT value FROM journal_meta WHERE key = 'store'), '?') \
         WHERE EXISTS (SELECT 1 FROM journal_meta WHERE key = 'store_id')",
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(sqlite_err(path, "read the store binding"))
}

fn reason_of(text: &str) -> u8 {
    let reason = AppendReason::ALL
        .into_iter()
        .find(|r| r.as_str() == text)
        .unwrap_or(AppendReason::Journal);
    frame::reason_code(reason)
}

fn millis_of(spooled_at: &str) -> i64 {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(spooled_at, &format)
        .map(|t| t.assume_utc())
        .unwrap_or_else(|_| OffsetDateTime::now_utc())
        .unix_timestamp()
        .saturating_mul(1000)
}

/// If `path` is the SQLite file of an earlier release, make it a journal directory (see the
/// module comment); finish an upgrade a crash interrupted. Returns the records moved.
pub async fn upgrade(path: &Path) -> Result<Option<u64>, JournalError> {
    let staging = upgrade_dir(path);
    if !path.is_file() {
        if !path.exists() && staging.is_dir() {
            fs::rename(&staging, path).map_err(io_err(path, "finish the upgrade"))?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent).map_err(io_err(path, "finish the upgrade"))?;
            }
        }
        return Ok(None);
    }
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(io_err(&staging, "clear an unfinished upgrade"))?;
    }
    fs::create_dir(&staging).map_err(io_err(&staging, "upgrade"))?;
    let mut conn = connect(path).await?;
    let moved = copy_into(&mut conn, path, &staging).await;
    close(conn, path).await;
    let moved = moved?;
    sync_dir(&staging).map_err(io_err(&staging, "upgrade"))?;
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let side = PathBuf::from(side);
        match fs::remove_file(&side) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_err(&side, "remove the upgraded file")(e));
            }
            _ => {}
        }
    }
    fs::remove_file(path).map_err(io_err(path, "remove the upgraded file"))?;
    fs::rename(&staging, path).map_err(io_err(path, "finish the upgrade"))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent).map_err(io_err(path, "finish the upgrade"))?;
    }
    Ok(Some(moved))
}

/// The old file's records as one segment (its seqs kept), its binding as `store`, its set
/// aside rows in `unreadable/`. Everything synced.
async fn copy_into(
    conn: &mut SqliteConnection,
    path: &Path,
    staging: &Path,
) -> Result<u64, JournalError> {
    let err = || sqlite_err(path, "read the journal of an earlier release");
    let io = || io_err(staging, "upgrade");
    if let Some((id, display)) = binding(conn, path).await? {
        super::local::write_binding(staging, &id, &display).map_err(io())?;
    }
    let mut moved = 0u64;
    let mut after = 0i64;
    let mut segment: Option<(fs::File, u64)> = None;
    loop {
        let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
            "SELECT seq, reason, spooled_at, record FROM spooled_records \
             WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(after)
        .bind(CHUNK)
        .fetch_all(&mut *conn)
        .await
        .map_err(err())?;
        let Some(last) = rows.last() else { break };
        after = last.0;
        if segment.is_none() {
            let first = u64::try_from(rows[0].0).unwrap_or(1);
            let file = fs::File::create_new(segment_path(staging, first)).map_err(io())?;
            file.write_all_at(&frame::segment_header(), 0)
                .map_err(io())?;
            segment = Some((file, frame::SEGMENT_HEADER as u64));
        }
        let Some((file, len)) = segment.as_mut() else {
            break;
        };
        let mut bytes = Vec::new();
        for (seq, reason, spooled_at, record) in &rows {
            let start = frame::begin(
                &mut bytes,
                KIND_RECORD,
                reason_of(reason),
                millis_of(spooled_at),
            );
            bytes.extend_from_slice(record.as_bytes());
            let end = bytes.len();
            if !frame::seal(&mut bytes, start, end, u64::try_from(*seq).unwrap_or(0)) {
                // Over a MiB: not a record this release could have written; kept aside.
                bytes.truncate(start);
                set_aside(staging, &format!("record{seq:020}.json"), record.as_bytes())
                    .map_err(io())?;
                continue;
            }
            moved += 1;
        }
        file.write_all_at(&bytes, *len).map_err(io())?;
        *len += bytes.len() as u64;
    }
    if let Some((file, _)) = segment {
        file.sync_all().map_err(io())?;
    }
    let has_unreadable: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = 'unreadable_records'")
            .fetch_one(&mut *conn)
            .await
            .map_err(err())?;
    if has_unreadable > 0 {
        let rows: Vec<(i64, String, String)> =
            sqlx::query_as("SELECT seq, record, error FROM unreadable_records ORDER BY seq")
                .fetch_all(&mut *conn)
                .await
                .map_err(err())?;
        for (seq, record, error) in rows {
            let text = format!("{error}\n{record}");
            set_aside(staging, &format!("record{seq:020}.json"), text.as_bytes()).map_err(io())?;
        }
    }
    Ok(moved)
}
