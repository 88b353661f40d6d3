//! The clicks export: every click of a campaign's window as RFC 4180 CSV (UTF-8, CRLF, a
//! header line), streamed.
//!
//! A task reads the rows as the database returns them and sends ~64 KiB chunks through a
//! channel of a few chunks: a slow client slows the query down instead of filling memory, and
//! a client that goes away stops it. The export costs the same memory for ten rows or ten
//! million (the benchmark measures it).

use bytes::Bytes;
use futures_util::TryStreamExt;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::sql::CLICK_COLUMNS;
use super::window::api_time;
use super::{StatsError, StatsReader, on_pool, sql};
use crate::db::db_time;

/// Bytes gathered before a chunk is sent.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks in flight between the query and the client.
const CHUNKS_IN_FLIGHT: usize = 4;

/// One click as `sql.clicks` reads it: the CSV's columns (`sql::CLICK_COLUMNS`).
#[derive(sqlx::FromRow)]
struct ExportRow {
    /// `None` for clicks the Flask app recorded.
    click_id: Option<String>,
    clicked_at: String,
    line_id: String,
    interaction_type: String,
    target: Option<String>,
    tags: Option<String>,
    user_agent: Option<String>,
}

/// Start exporting the clicks of `[from, to)`; the receiver yields the CSV in chunks, then ends, or yields one error (the
/// rows so far were sent: the download is cut short, never silently complete). `on_error`
/// is called once with that error, for the caller's log line and metric.
pub fn clicks_csv(
    reader: &StatsReader,
    campaign_id: i64,
    from: OffsetDateTime,
    to: OffsetDateTime,
    on_error: impl FnOnce(&StatsError) + Send + 'static,
) -> mpsc::Receiver<Result<Bytes, StatsError>> {
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let reader = reader.clone();
    let (from, to) = (db_time(from), db_time(to));
    // In the caller's span: an error's log line names the request it cut short.
    let export = async move {
        let result = stream_rows(&reader, campaign_id, &from, &to, &tx).await;
        if let Err(e) = result {
            on_error(&e);
            // The client may be gone already; then nobody is left to tell.
            let _gone = tx.send(Err(e)).await;
        }
    };
    tokio::spawn(tracing::Instrument::in_current_span(export));
    rx
}

async fn stream_rows(
    reader: &StatsReader,
    campaign_id: i64,
    from: &str,
    to: &str,
    tx: &mpsc::Sender<Result<Bytes, StatsError>>,
) -> Result<(), StatsError> {
    let mut buf = String::with_capacity(CHUNK_BYTES + 4096);
    let header: Vec<&str> = CLICK_COLUMNS.to_vec();
    write_record(&mut buf, &header);
    on_pool!(reader, pool, sql => {
        let mut rows = sqlx::query_as::<_, ExportRow>(sql.clicks)
            .bind(campaign_id)
            .bind(from)
            .bind(to)
            .fetch(pool);
        loop {
            let row = tokio::time::timeout(super::QUERY_TIMEOUT, rows.try_next())
                .await
                .map_err(|_| StatsError::TimedOut { operation: "read clicks for export" })?;
            let Some(row) = row.map_err(super::store_err("read clicks for export"))? else {
                break;
            };
            write_record(
                &mut buf,
                &[
                    row.click_id.as_deref().unwrap_or(""),
                    &api_time(&row.clicked_at),
                    &row.line_id,
                    &row.interaction_type,
                    row.target.as_deref().unwrap_or(""),
                    row.tags.as_deref().unwrap_or(""),
                    row.user_agent.as_deref().unwrap_or(""),
                ],
            );
            if buf.len() >= CHUNK_BYTES {
                let chunk = Bytes::from(std::mem::take(&mut buf));
                if tx.send(Ok(chunk)).await.is_err() {
                    return Ok(()); // the client went away: stop reading
                }
            }
        }
    });
    if !buf.is_empty() {
        // As above: nothing to do if the client has gone.
        let _gone = tx.send(Ok(Bytes::from(buf))).await;
    }
    Ok(())
}

/// Append one CSV record (CRLF-terminated).
pub fn write_record(out: &mut String, fields: &[&str]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_field(out, field);
    }
    out.push_str("\r\n");
}

/// One field, quoted when it holds a comma, a quote, CR or LF (RFC 4180), and with a leading
/// `'` when a spreadsheet would read it as a formula (`=`, `+`, `-`, `@`, tab, CR first): uids,
/// targets, tags and User-Agents come from the click, and the export is opened in Excel.
pub fn write_field(out: &mut String, field: &str) {
    let formula = field.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = field.contains([',', '"', '\r', '\n']);
    if quote {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    if quote {
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &[&str]) -> String {
        let mut out = String::new();
        write_record(&mut out, fields);
        out
    }

    #[test]
    fn quotes_only_what_rfc_4180_requires() {
        assert_eq!(record(&["a", "b c", ""]), "a,b c,\r\n");
        assert_eq!(
            record(&["x,y", "say \"hi\"", "two\nlines"]),
            "\"x,y\",\"say \"\"hi\"\"\",\"two\nlines\"\r\n"
        );
        assert_eq!(record(&["東京", "ü"]), "東京,ü\r\n");
    }

    #[test]
    fn formulas_are_neutralised() {
        assert_eq!(
            record(&["=HYPERLINK(\"x\")"]),
            "\"'=HYPERLINK(\"\"x\"\")\"\r\n"
        );
        assert_eq!(record(&["+1", "-2", "@A1"]), "'+1,'-2,'@A1\r\n");
        assert_eq!(record(&["a=1"]), "a=1\r\n");
    }
}
