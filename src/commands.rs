//! The subcommands other than `serve`: small, one store operation each.

use crate::app::{self, AppError};
use crate::config::{CampaignAddArgs, CampaignCommand, Cli, Command, DbArgs};
use crate::store::Store;

/// Run the parsed command line.
pub async fn run(cli: Cli) -> Result<(), AppError> {
    match cli.command {
        Command::Serve(args) => app::serve(args.settings()?).await,
        Command::Migrate(db) => migrate(&db).await,
        Command::Campaign(CampaignCommand::Add(args)) => add_campaign(&args).await,
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
