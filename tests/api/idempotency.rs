//! A batch written twice (a retry after an ambiguous commit, later a spool replay) counts
//! once: the `click_id` unique key is the arbiter. Exercised on the store directly.

use clicktrack::domain::{Record, Reject, RejectReason};

use crate::helpers::click_record as click;
use clicktrack::store::{ConnectOptions, DatabaseUrl, ErrorKind, Outcome, Seen, Store};
use time::OffsetDateTime;
use uuid::Uuid;

crate::store_tests! {
async fn a_batch_written_twice_counts_once(db) {
    let url = DatabaseUrl::parse(&db.url).expect("url");
    let store = Store::connect(&url, ConnectOptions { max_connections: 2 }).await.expect("connect");
    let reject = Record::Reject(Reject {
        click_id: Uuid::now_v7(),
        received_at: OffsetDateTime::now_utc(),
        reason: RejectReason::InvalidCampaign,
        detail: None,
        query: "cid=x".into(),
        user_agent: None,
    });
    let batch = vec![click("U_IDEM", "A"), click("U_IDEM", "B"), click("U_OTHER", "C"), reject];

    let first = store.write_batch(&batch, Seen::Never).await.expect("first write");
    assert_eq!(
        first.outcomes,
        [Outcome::Recorded, Outcome::Recorded, Outcome::Recorded, Outcome::Rejected(RejectReason::InvalidCampaign)]
    );
    let again = store.write_batch(&batch, Seen::Maybe).await.expect("replay");
    assert_eq!(again.outcomes, [Outcome::AlreadyRecorded; 4]);
    // Part old, part new: only the new one moves anything.
    let mut mixed = batch.clone();
    mixed.push(click("U_IDEM", "D"));
    let third = store.write_batch(&mixed, Seen::Maybe).await.expect("mixed");
    assert_eq!(third.outcomes.last(), Some(&Outcome::Recorded));
    assert_eq!(third.outcomes.iter().filter(|o| **o == Outcome::AlreadyRecorded).count(), 4);

    assert_eq!(db.campaign_clicks(123).await, 4);
    assert_eq!(db.summary("U_IDEM", 1).await, Some((3, Some("A,B,D".into()))));
    assert_eq!(db.count("component_interaction_logs").await, 4);
    assert_eq!(db.count("messages").await, 4);
    assert_eq!(db.count("track_rejects").await, 1);
    assert_eq!(db.count("track_click_tags").await, 4, "one tag row per recorded click's tag");
    crate::rollups::assert_rollups_match_log(&db).await;

    // Without the lookup the unique key refuses the duplicate, and nothing is double counted.
    let refused = store.write_batch(&batch, Seen::Never).await.expect_err("duplicate click_id");
    assert_eq!(refused.kind, ErrorKind::Refused);
    assert_eq!(db.campaign_clicks(123).await, 4);
    assert_eq!(db.count("track_click_tags").await, 4);
    store.close().await;
}
}
