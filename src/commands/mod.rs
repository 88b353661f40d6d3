//! The subcommands other than `serve`: small, one store or journal operation each
//! (`stats` has its own file).

mod stats;

use std::time::Duration;

use crate::app::{self, AppError};
use time::OffsetDateTime;

use crate::config::{
    CampaignAddArgs, CampaignCommand, Cli, Command, ConfigError, DbArgs, LinkArgs, SpoolArgs,
    SpoolCommand,
};
use crate::domain::link::{LinkError, LinkSpec};
use crate::journal::{Journal, LocalJournal, StoreIdentity};
use crate::pipeline::applier::{ApplyStep, apply_step};
use crate::pipeline::{Budget, Committer};
use crate::store::Store;

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
    }
}

/// `clicktrack link`: print a signed link, checked by the rules of `/__track`.
fn print_link(args: &LinkArgs) -> Result<(), AppError> {
    let keys = args.signing.keyring()?;
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
        .map_err(|e| ConfigError::new(link_error_flag(&e), e))?;
    println!("{url}");
    Ok(())
}

/// The flag to blame for a link that cannot be minted.
pub fn link_error_flag(e: &LinkError) -> &'static str {
    match e {
        LinkError::NoSigningKey => "--signing-key",
        LinkError::BaseUrl(_) => "--base-url",
        LinkError::Target(_) => "--to",
        LinkError::Field(_) => "--cid/--uid/--src/--type/--tag",
    }
}

async fn migrate(db: &DbArgs) -> Result<(), AppError> {
    let store = Store::connect(&db.database()?, db.connect_options()).await?;
    store.migrate().await?;
    store.close().await;
    tracing::info!(database = %db.database()?, "schema is up to date");
    Ok(())
}

async fn add_campaign(args: &CampaignAddArgs) -> Result<(), AppError> {
    let store = Store::connect(&args.db.database()?, args.db.connect_options()).await?;
    store.migrate().await?;
    let created = store.add_campaign(args.id, &args.name).await;
    store.close().await;
    if created? {
        println!("campaign {} added: {}", args.id, args.name);
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
    match (&status.oldest_spooled_at, status.oldest_received_at) {
        (Some(spooled), Some(received)) => {
            println!("oldest:      appended {spooled} UTC, clicked {received}")
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
    let store = Store::connect(&database, args.db.connect_options()).await?;
    store.migrate().await?;
    let identity = StoreIdentity::of(&store, &database).await?;
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
