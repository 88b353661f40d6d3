//! `clicktrack member erase --uid U [--dry-run]`: one person removed from the store, the
//! journal and Redis (`pipeline/erasure.rs`, docs/privacy.md). Safe while `serve` runs: the
//! store's erasure list stops the member's clicks still waiting in any journal, and the local
//! journal is edited here only when no `serve` holds it.

use std::time::Duration;

use crate::app::AppError;
use crate::config::{ConfigError, MemberEraseArgs};
use crate::dedup::{Dedup, DedupSettings};
use crate::journal::{Journal, JournalError, LocalJournal};
use crate::pipeline::erasure::{self, ErasureReport, JournalAccess, check_uid};
use crate::store::Store;

pub async fn erase(args: &MemberEraseArgs) -> Result<(), AppError> {
    if let Some(problem) = check_uid(&args.uid) {
        return Err(ConfigError::new("--uid", problem).into());
    }
    let database = args.db.database()?;
    let dedup = match args.redis.settings(Duration::from_secs(5))? {
        None => None,
        Some(redis) => {
            let settings = DedupSettings {
                window: Duration::from_secs(1),
                cache_entries: 1,
                redis: Some(redis),
            };
            Dedup::start(&settings).await
        }
    };
    Store::check_readable(&database).await?;
    let store = Store::connect(&database, args.db.connect_options()).await?;
    store.migrate().await?;
    let path = args.spool.path(&database);
    let mut note = None;
    let journal = if path.exists() {
        let identity = crate::app::journal_identity(&store, &database).await?;
        let journal = Journal::Local(LocalJournal::owned(&path, identity, 0));
        match journal.reopen().await {
            Ok(()) => Some(journal),
            Err(JournalError::Locked(_)) => {
                note = Some(format!(
                    "journal {}: held by a running serve; its records of this member are \
                     dropped as they are applied (track_clicks_erased_total)",
                    path.display()
                ));
                None
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    let access = journal
        .as_ref()
        .map_or(JournalAccess::Elsewhere, JournalAccess::Owned);
    let result =
        erasure::erase_member(&store, access, dedup.as_ref(), &args.uid, args.dry_run).await;
    if let Some(journal) = &journal {
        journal.close().await;
    }
    store.close().await;
    let report = result?;
    print_report(&database.to_string(), &report, note.as_deref());
    Ok(())
}

fn print_report(database: &str, report: &ErasureReport, note: Option<&str>) {
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    println!("{database}: member {} (uid hash) {verb}:", report.uid_hash);
    for (table, rows) in &report.deleted {
        println!("  {table:<40} {rows}");
    }
    for (table, rows) in &report.pseudonymized {
        println!("  {:<40} {rows}", format!("{table} (uid replaced)"));
    }
    match report.journal_records {
        Some(n) => println!("  {:<40} {n}", "journal records"),
        None => println!("  {:<40} -", "journal records"),
    }
    match report.redis_keys {
        Some(n) => println!("  {:<40} {n}", "redis de-duplication keys"),
        None => println!("  {:<40} -", "redis de-duplication keys"),
    }
    if let Some(note) = note {
        println!("{note}");
    }
    println!("campaign counters and statistics keep their counts");
}
