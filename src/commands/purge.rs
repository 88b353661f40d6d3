//! `clicktrack purge --before DATE [--dry-run]`: retention by hand (`serve --log-retention`
//! does the same every hour). The rollups are brought up to date first, so every deleted row
//! stays counted in the statistics.

use time::OffsetDateTime;

use crate::app::AppError;
use crate::config::{ConfigError, PurgeArgs};
use crate::pipeline::retention::{self, PURGE_CHUNK};
use crate::store::{Purged, Store, db_time};

pub async fn run(args: &PurgeArgs) -> Result<(), AppError> {
    let before = crate::stats::window::parse_time(&args.before)
        .map_err(|e| ConfigError::new("--before", e))?;
    if before > OffsetDateTime::now_utc() {
        return Err(ConfigError::new(
            "--before",
            format!(
                "{} is in the future: that would delete clicks being recorded now",
                args.before
            ),
        )
        .into());
    }
    let database = args.db.database()?;
    Store::check_readable(&database).await?;
    let store = Store::connect(&database, args.db.connect_options()).await?;
    let result = purge(&store, before, args.dry_run).await;
    store.close().await;
    let (purged, verb) = result?;
    println!(
        "{database}: {verb} {} interaction log rows, {} click tags and {} rejects older than \
         {} UTC; the campaign statistics keep their counts",
        purged.logs,
        purged.tags,
        purged.rejects,
        db_time(before)
    );
    Ok(())
}

async fn purge(
    store: &Store,
    before: OffsetDateTime,
    dry_run: bool,
) -> Result<(Purged, &'static str), AppError> {
    store.migrate().await?;
    if dry_run {
        return Ok((store.purge_counts(&db_time(before)).await?, "would delete"));
    }
    let mut steps = 0u64;
    let purged = retention::purge_before(store, before, |step| {
        steps += 1;
        if steps.is_multiple_of(50) {
            tracing::info!(
                deleted_logs_in_step = step.logs,
                rows_per_step = PURGE_CHUNK,
                "purging"
            );
        }
    })
    .await?;
    Ok((purged, "deleted"))
}
