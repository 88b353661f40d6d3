//! The subcommands other than `serve`: small, one store or journal operation each
//! (`stats` has its own file).

mod member;
mod progress;
mod purge;
mod stats;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::app::{self, AppError};
use time::OffsetDateTime;

use crate::config::{
    CampaignAddArgs, CampaignCommand, Cli, Command, ConfigError, DbArgs, LinkArgs, MemberCommand,
    SpoolArgs, SpoolCommand,
};
use crate::domain::link::{LinkError, LinkSpec};
use crate::journal::{Journal, LocalJournal};
use crate::pipeline::applier::{ApplyStep, apply_step};
use crate::pipeline::{Budget, Committer};
use crate::pipeline::{backfill, member_packs};
use crate::store::Store;

/// SQLite page cache of `migrate`'s backfill, MiB (the writer's usual 8 MiB made a backfill of
/// millions of rows read the rollups' pages back from the OS at every step).
const BACKFILL_CACHE_MIB: u32 = 256;
/// Records per applied transaction in `clicktrack spool replay`.
const REPLAY_BATCH: usize = 4_096;
/// How long `spool replay` keeps retrying one batch before it gives up and exits.
const REPLAY_PATIENCE: Duration = Duration::from_secs(30);

/// Run the parsed command line.
pub async fn run(cli: Cli) -> Result<(), AppError> {
    match cli.command {
        Command::Serve(args) => app::serve(args.settings()?).await,
        Command::Migrate(db) => migrate(&db).await,
        Command::Campaign(CampaignCommand::Add(args)) => add_campaign(&args).await,
        Command::Spool(SpoolCommand::Status(args)) => spool_status(&args).await,
        Command::Spool(SpoolCommand::Replay(args)) => spool_replay(&args).await,
        Command::Link(args) => print_link(&args),
        Command::Stats(args) => stats::print(&args).await,
        Command::Purge(args) => purge::run(&args).await,
        Command::Member(MemberCommand::Erase(args)) => member::erase(&args).await,
    }
}

/// `clicktrack link`: print a signed link, checked by the rules of `/__track`.
fn print_link(args: &LinkArgs) -> Result<(), AppError> {
    let keys = args.signing.keyring()?;
    if keys.is_empty() {
        return Err(ConfigError::missing(
            "--signing-key",
            "a link is signed with the first key (KID:SECRET, the same keys serve verifies with)",
        )
        .into());
    }
    let expires_at = args
        .expires_in
        .map(|d| OffsetDateTime::now_utc().unix_timestamp() + d.as_secs() as i64);
    let spec = LinkSpec {
        to: args.to.clone(),
        cid: args.cid,
        uid: args.uid.clone(),
        src: args.src,
        interaction_type: args.interaction_type.clone(),
        tag: args.tag.clone(),
        expires_at,
    };
    let url = spec
        .signed_url(&args.base_url, &keys)
        .map_err(|e| ConfigError::new(link_error_flag(&e), e.problem()))?;
    println!("{url}");
    Ok(())
}

/// The flag to blame for a link that cannot be minted.
pub fn link_error_flag(e: &LinkError) -> &'static str {
    match e.field() {
        None => "--signing-key",
        Some("base_url") => "--base-url",
        Some("to") => "--to",
        Some("cid") => "--cid",
        Some("uid") => "--uid",
        Some("src") => "--src",
        Some("type") => "--type",
        Some("tag") => "--tag",
        Some(_) => "--cid/--uid/--src/--type/--tag",
    }
}

async fn migrate(db: &DbArgs) -> Result<(), AppError> {
    let database = db.database()?;
    let store = Store::connect(&database, db.connect_options()).await?;
    let changed = async {
        let before = store.schema_objects().await?;
        if let Err(error) = store.migrate().await {
            // Say what was changed before the failure (the next run will not list it again)
            // and, for the failure the migration guide knows, which step fixes it.
            let done = match store.schema_objects().await {
                Ok(after) => describe_migration(&before, &after),
                Err(_) => "unknown (the schema could not be read after the failure)".to_owned(),
            };
            return Err(AppError::MigrateFailed {
                database: database.to_string(),
                done,
                hint: migrate_hint(&error),
                source: Box::new(error),
            });
        }
        let after = store.schema_objects().await?;
        Ok::<_, AppError>(describe_migration(&before, &after))
    }
    .await;
    let changed = match changed {
        Ok(changed) => changed,
        Err(e) => {
            store.close().await;
            return Err(e);
        }
    };
    println!("{database}: {changed}");
    let built = build_rollups(&store).await;
    // Then every closed hour's members as packs, so the first report of a long window
    // does not wait for serve's packer.
    let packing = std::time::Instant::now();
    let packed = match built {
        Ok(_) => Some(member_packs::run_to_end(&store).await),
        Err(_) => None,
    };
    let packing = packing.elapsed();
    store.close().await;
    let built = built?;
    println!("rollups: {}", describe_backfill(built));
    if let Some(packed) = packed.transpose()?.filter(|p| p.hours > 0) {
        println!(
            "member packs: {} campaign-hours packed ({} member-hours) in {:.1} s",
            packed.hours,
            packed.members,
            packing.as_secs_f64()
        );
    }
    Ok(())
}

/// What to do about a migration failure the migration guide covers.
fn migrate_hint(error: &crate::store::StoreError) -> &'static str {
    // MySQL's duplicate key (1062) or PostgreSQL's unique violation (23505), here on the
    // unique key the migration adds to members.
    let duplicate = matches!(error.code.as_deref(), Some("1062" | "23505"));
    if duplicate && error.to_string().contains("line_uid") {
        "members holds the same line_uid more than once, so its unique key cannot be added: \
         merge each group into one row first (docs/migrating-from-flask.md, step 1 lists \
         them), then run migrate again; it carries on from where it stopped"
    } else {
        "fix the cause above and run migrate again; it carries on from where it stopped"
    }
}

/// What `migrate`'s backfill did, in one sentence.
fn describe_backfill(built: backfill::Backfilled) -> String {
    let rows = |n: u64, what: &str| {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        crate::stats::report::counted(n, &format!("{what} row"), &format!("{what} rows"))
    };
    if built == backfill::Backfilled::default() {
        return "up to date, campaign statistics are complete".to_owned();
    }
    format!(
        "rolled up {} and {} from other programs; campaign statistics are complete",
        rows(built.history_rows, "history"),
        rows(built.foreign_rows, "new"),
    )
}

/// The backfill of `migrate`, with a progress bar on a terminal and a log line every few
/// seconds otherwise.
async fn build_rollups(store: &Store) -> Result<backfill::Backfilled, AppError> {
    let state = store.rollup_state().await?;
    if !state.history_complete() {
        store.set_bulk_mode(BACKFILL_CACHE_MIB).await?;
    }
    let mut progress =
        progress::Progress::new(state.ids_total(), state.ids_total() - state.ids_left());
    let built = backfill::run_to_end(store, backfill::MIGRATE_CHUNK, |step| {
        progress.update(
            step.state.ids_total() - step.state.ids_left(),
            step.history_rows + step.foreign_rows,
        );
    })
    .await;
    progress.finish();
    Ok(built?)
}

/// What `migrate` changed, in one sentence: the tables it created, then the columns and
/// indexes it added to tables that were there before, the indexes it rebuilt with other
/// columns under the same name, then what it dropped (only clicktrack's own indexes that
/// nothing reads any more; never a table, a column or a seed index).
fn describe_migration(before: &BTreeSet<String>, after: &BTreeSet<String>) -> String {
    let named = |objects: &BTreeSet<String>| -> BTreeMap<String, String> {
        objects
            .iter()
            .map(|o| {
                let (name, columns) = name_and_columns(o);
                (name.to_owned(), columns.to_owned())
            })
            .collect()
    };
    let (before, after) = (named(before), named(after));
    let added: Vec<&String> = after.keys().filter(|o| !before.contains_key(*o)).collect();
    let dropped: Vec<&str> = before
        .keys()
        .filter(|o| !after.contains_key(*o))
        .map(String::as_str)
        .collect();
    let rebuilt: Vec<String> = after
        .iter()
        .filter(|(name, columns)| before.get(*name).is_some_and(|was| was != *columns))
        .map(|(name, columns)| format!("{name} {columns}"))
        .collect();
    if added.is_empty() && dropped.is_empty() && rebuilt.is_empty() {
        return "schema already up to date, nothing changed".to_owned();
    }
    let new_tables: Vec<&str> = added
        .iter()
        .filter_map(|o| o.strip_prefix("table "))
        .collect();
    // A column or index of a table created just now is part of "created table T".
    let on_new_table = |object: &str| {
        let name = object.split_once(' ').map_or(object, |(_, name)| name);
        new_tables
            .iter()
            .any(|t| name.split_once('.').is_some_and(|(table, _)| table == *t))
    };
    let mut parts = Vec::new();
    if !new_tables.is_empty() {
        parts.push(format!("created tables {}", new_tables.join(", ")));
    }
    let extras: Vec<&str> = added
        .iter()
        .filter(|o| !o.starts_with("table ") && !on_new_table(o))
        .map(|o| o.as_str())
        .collect();
    if !extras.is_empty() {
        parts.push(format!("added {}", extras.join(", ")));
    }
    if !rebuilt.is_empty() {
        parts.push(format!("rebuilt {}", rebuilt.join(", ")));
    }
    if dropped.is_empty() {
        parts.push("nothing dropped".to_owned());
    } else {
        parts.push(format!("dropped {}", dropped.join(", ")));
    }
    parts.join("; ")
}

/// `index T.I(a,b)` → (`index T.I`, `(a,b)`); a table or a column has no column list.
fn name_and_columns(object: &str) -> (&str, &str) {
    match object.find('(').filter(|_| object.starts_with("index ")) {
        Some(at) => object.split_at(at),
        None => (object, ""),
    }
}

async fn add_campaign(args: &CampaignAddArgs) -> Result<(), AppError> {
    if args.name.trim().is_empty() {
        return Err(ConfigError::new("--name", "empty: reports and the dashboard show it").into());
    }
    let database = args.db.database()?;
    // Run in the wrong folder, it would otherwise create an empty database of its own.
    Store::check_readable(&database).await?;
    let store = Store::connect(&database, args.db.connect_options()).await?;
    store.migrate().await?;
    let created = store.add_campaign(args.id, &args.name).await;
    store.close().await;
    if created? {
        println!("{database}: campaign {} added: {}", args.id, args.name);
        Ok(())
    } else {
        Err(AppError::CampaignExists(args.id))
    }
}

/// The journal named by `args`, which must exist: opening a missing one would create an
/// empty journal and hide a mistyped path.
fn journal_path(args: &SpoolArgs) -> Result<std::path::PathBuf, AppError> {
    let path = args.spool.path(&args.db.database()?);
    if !path.exists() {
        return Err(AppError::NoJournal(path));
    }
    Ok(path)
}

async fn spool_status(args: &SpoolArgs) -> Result<(), AppError> {
    let journal = LocalJournal::new(journal_path(args)?);
    let status = journal.status().await;
    journal.close().await;
    let status = status?;
    println!("journal:     {}", journal.path().display());
    println!("store:       {}", status.store.as_deref().unwrap_or("-"));
    println!("depth:       {}", status.depth);
    // Both times in one form, the journal's own (`2026-12-05 06:45:57 UTC`).
    match (&status.oldest_spooled_at, status.oldest_received_at) {
        (Some(spooled), Some(received)) => {
            let received = crate::store::db_time(received);
            println!("oldest:      appended {spooled} UTC, clicked {received} UTC")
        }
        (Some(spooled), None) => println!("oldest:      appended {spooled} UTC"),
        _ => println!("oldest:      -"),
    }
    println!("unreadable:  {}", status.unreadable);
    Ok(())
}

async fn spool_replay(args: &SpoolArgs) -> Result<(), AppError> {
    let path = journal_path(args)?;
    let database = args.db.database()?;
    Store::check_readable(&database).await?;
    let store = Store::connect(&database, args.db.connect_options()).await?;
    store.migrate().await?;
    let identity = app::journal_identity(&store, &database).await?;
    // Owned: locked (never while a `serve` applies it) and checked against this store.
    let journal = Journal::Local(LocalJournal::owned(path, identity, 0));
    journal.reopen().await?;
    let committer = Committer::new(store);
    let mut total = ApplyStep::default();
    let result = loop {
        let budget = Budget::until(REPLAY_PATIENCE);
        let step = match apply_step(&committer, &journal, REPLAY_BATCH, budget).await {
            Ok(step) => step,
            Err(e) => break Err(AppError::from(e)),
        };
        total.add(&step);
        if let Some(e) = step.store_failure {
            break Err(AppError::Store(e));
        }
        if step.read == 0 {
            break Ok(());
        }
    };
    let left = journal.depth();
    committer.store().close().await;
    journal.close().await;
    println!(
        "replayed {}: {} recorded, {} already recorded, {} rejected, {} refused; {} left in the journal",
        total.removed(),
        total.recorded,
        total.already_recorded,
        total.rejected,
        total.lost,
        left
    );
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn migrate_says_what_it_created_and_added() {
        let old = set(&[
            "table members",
            "column members.id",
            "table logs",
            "column logs.id",
        ]);
        assert_eq!(
            describe_migration(&old, &old),
            "schema already up to date, nothing changed"
        );
        let new = set(&[
            "table members",
            "column members.id",
            "table logs",
            "column logs.id",
            "column logs.click_id",
            "index logs.idx_click(click_id)",
            "table track_rejects",
            "column track_rejects.id",
            "index track_rejects.idx_time(received_at)",
        ]);
        assert_eq!(
            describe_migration(&old, &new),
            "created tables track_rejects; added column logs.click_id, index logs.idx_click; \
             nothing dropped"
        );
        assert_eq!(
            describe_migration(&BTreeSet::new(), &old),
            "created tables logs, members; nothing dropped"
        );
        let mut retired = new.clone();
        retired.remove("index logs.idx_click(click_id)");
        retired.insert("table rollups".to_owned());
        assert_eq!(
            describe_migration(&new, &retired),
            "created tables rollups; dropped index logs.idx_click"
        );
        // The same name over other columns: rebuilt, not "nothing changed".
        let mut widened = new.clone();
        widened.remove("index logs.idx_click(click_id)");
        widened.insert("index logs.idx_click(click_id,line_id)".to_owned());
        assert_eq!(
            describe_migration(&new, &widened),
            "rebuilt index logs.idx_click (click_id,line_id); nothing dropped"
        );
    }
}
