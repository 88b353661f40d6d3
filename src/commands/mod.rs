//! The subcommands other than `serve`: small, one store or spool operation each
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
use crate::pipeline::replay::replay_step;
use crate::pipeline::{Budget, Committer};
use crate::spool::Spool;
use crate::store::Store;

/// Records per replayed transaction in `clicktrack spool replay`.
const REPLAY_BATCH: usize = 512;
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

fn open_spool_at(args: &SpoolArgs) -> Result<Spool, AppError> {
    let path = args.spool.path(&args.db.database()?);
    if !path.exists() {
        // Opening would create an empty spool and hide a mistyped path.
        return Err(AppError::NoSpool(path));
    }
    Ok(Spool::new(path))
}

async fn spool_status(args: &SpoolArgs) -> Result<(), AppError> {
    let spool = open_spool_at(args)?;
    let status = spool.status().await;
    spool.close().await;
    let status = status?;
    println!("spool:       {}", spool.path().display());
    println!("depth:       {}", status.depth);
    match (&status.oldest_spooled_at, status.oldest_received_at) {
        (Some(spooled), Some(received)) => {
            println!("oldest:      spooled {spooled} UTC, clicked {received}")
        }
        (Some(spooled), None) => println!("oldest:      spooled {spooled} UTC"),
        _ => println!("oldest:      -"),
    }
    println!("unreadable:  {}", status.unreadable);
    Ok(())
}

async fn spool_replay(args: &SpoolArgs) -> Result<(), AppError> {
    let spool = open_spool_at(args)?;
    let store = Store::connect(&args.db.database()?, args.db.connect_options()).await?;
    store.migrate().await?;
    let committer = Committer::new(store);
    let mut total = crate::pipeline::replay::ReplayStep::default();
    let result = loop {
        let step = match replay_step(
            &committer,
            &spool,
            REPLAY_BATCH,
            Budget::until(REPLAY_PATIENCE),
        )
        .await
        {
            Ok(step) => step,
            Err(e) => break Err(AppError::from(e)),
        };
        total.read += step.read;
        total.recorded += step.recorded;
        total.already_recorded += step.already_recorded;
        total.rejected += step.rejected;
        total.lost += step.lost;
        if let Some(e) = step.store_failure {
            break Err(AppError::Store(e));
        }
        if step.read == 0 {
            break Ok(());
        }
    };
    let left = spool.refresh_depth().await.unwrap_or(spool.depth());
    committer.store().close().await;
    spool.close().await;
    println!(
        "replayed {}: {} recorded, {} already recorded, {} rejected, {} refused; {} left in the spool",
        total.removed(),
        total.recorded,
        total.already_recorded,
        total.rejected,
        total.lost,
        left
    );
    result
}
