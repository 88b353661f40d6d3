//! The store's apply ceiling without HTTP: how many clicks per second `Store::write_batch`
//! takes at a given batch size, written the way the applier writes them: `fresh` (the
//! default) as it writes clicks it appended and reads for the first time (`Seen::Never`, no
//! id lookup), `replayed` as it writes a journal found at start or a batch tried before
//! (`Seen::Maybe`, ids looked up). `scripts/bench.sh` prints it beside the HTTP figures.
//!
//! Usage: `apply_ceiling DATABASE_URL [CLICKS] [BATCH] [fresh|replayed]` (the database must
//! have campaigns 123, 456 and 789). The clicks are the seed's Locust mix: 1,000 members, 3
//! campaigns, 4 sources, tags A/B/C.

use std::time::Instant;

use clicktrack::domain::{CampaignId, Click, InteractionType, LineUid, Record};
use clicktrack::store::{ConnectOptions, DatabaseUrl, Seen, Store};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: apply_ceiling DATABASE_URL [CLICKS] [BATCH] [fresh|replayed]")?;
    let clicks: usize = args.next().map_or(Ok(100_000), |s| s.parse())?;
    let batch: usize = args.next().map_or(Ok(4_096), |s| s.parse())?;
    let seen = match args.next().as_deref() {
        None | Some("fresh") => Seen::Never,
        Some("replayed") => Seen::Maybe,
        Some(other) => return Err(format!("fresh or replayed, not {other:?}").into()),
    };
    let store = Store::connect(
        &DatabaseUrl::parse(&url)?,
        ConnectOptions { max_connections: 2 },
    )
    .await?;
    store.migrate().await?;

    let tags = [
        vec!["A"],
        vec!["B"],
        vec!["C"],
        vec!["A", "B"],
        vec!["B", "C"],
        vec![],
    ];
    let records: Vec<Record> = (0..clicks)
        .map(|i| {
            let n = fastrand::usize(..);
            Record::Click(Click {
                click_id: uuid::Uuid::now_v7(),
                received_at: time::OffsetDateTime::now_utc(),
                uid: LineUid::parse(format!("U{}", 1 + n % 1000)).ok(),
                campaign_id: CampaignId::new([123, 456, 789][i % 3]).expect("positive"),
                source_campaign_id: [0, 100, 200, 300][n % 4],
                interaction_type: InteractionType::ImageClick,
                target: "https://example.com".into(),
                tags: tags[n % tags.len()].iter().map(|t| t.to_string()).collect(),
                user_agent: Some("Mozilla/5.0 (iPhone) Line/13.20.0".into()),
            })
        })
        .collect();

    let started = Instant::now();
    for chunk in records.chunks(batch) {
        store.write_batch(chunk, seen).await?;
    }
    let secs = started.elapsed().as_secs_f64();
    store.close().await;
    let how = match seen {
        Seen::Never => "fresh",
        Seen::Maybe => "replayed, ids looked up",
    };
    println!(
        "apply ceiling ({how}): {clicks} clicks in batches of {batch}: {:.2} s, {:.0} clicks/s",
        secs,
        clicks as f64 / secs
    );
    Ok(())
}
