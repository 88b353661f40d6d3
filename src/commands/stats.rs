//! `clicktrack stats [--campaign N] [--since 7d] [--format table|json|csv]`: the admin API's
//! numbers on a terminal, read from --database-url through the same queries.

use std::io::Write;

use time::OffsetDateTime;

use crate::app::AppError;
use crate::config::{StatsArgs, StatsFormat};
use crate::stats::window::Window;
use crate::stats::{StatsReader, export, report};

pub async fn print(args: &StatsArgs) -> Result<(), AppError> {
    let database = args.db.database()?;
    crate::store::Store::check_readable(&database).await?;
    let reader = StatsReader::connect(&database)?;
    let result = run(&reader, args).await;
    reader.close().await;
    result
}

async fn run(reader: &StatsReader, args: &StatsArgs) -> Result<(), AppError> {
    let Some(id) = args.campaign else {
        let campaigns = reader.campaigns().await?;
        let text = match args.format {
            StatsFormat::Table => report::campaigns_table(&campaigns),
            StatsFormat::Json => json(&serde_json::json!({ "campaigns": campaigns }))?,
            StatsFormat::Csv => report::campaigns_csv(&campaigns),
        };
        return write_out(text.as_bytes());
    };
    let span = time::Duration::try_from(args.since).map_err(|e| bad_since(e.to_string()))?;
    let window = Window::since(span, OffsetDateTime::now_utc()).map_err(bad_since)?;
    match args.format {
        StatsFormat::Table => {
            let stats = reader.campaign_stats(id, &window).await?;
            write_out(report::campaign_stats_table(&stats).as_bytes())
        }
        StatsFormat::Json => {
            let stats = reader.campaign_stats(id, &window).await?;
            write_out(json(&stats)?.as_bytes())
        }
        StatsFormat::Csv => {
            reader.campaign(id).await?;
            if let Some(horizon) = reader.log_purged_before().await?
                && window.from < horizon
            {
                eprintln!(
                    "note: the raw log before {} was purged (retention): those clicks are \
                     counted in the stats but cannot be listed",
                    crate::stats::window::rfc3339(horizon)
                );
            }
            // Errors reach us through the channel; the callback is for the server's metrics.
            let mut chunks = export::clicks_csv(reader, id, window.from, window.to, |_| {});
            while let Some(chunk) = chunks.recv().await {
                write_out(&chunk?)?;
            }
            Ok(())
        }
    }
}

fn json(value: &impl serde::Serialize) -> Result<String, AppError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| AppError::Task {
        what: "json output",
        source: e.into(),
    })?;
    text.push('\n');
    Ok(text)
}

fn write_out(bytes: &[u8]) -> Result<(), AppError> {
    std::io::stdout()
        .lock()
        .write_all(bytes)
        .map_err(|e| AppError::Task {
            what: "writing to stdout",
            source: e.into(),
        })
}

fn bad_since(reason: String) -> AppError {
    AppError::Config(crate::config::ConfigError::new("--since", reason))
}
