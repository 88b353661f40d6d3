//! SPEC §3: exact totals under concurrency (P0 counter, P1 lost tags, P2 several instances),
//! starting with the seed's own tests, ported.

use std::collections::BTreeSet;

use futures_util::future::join_all;

use crate::helpers::{ALLOWED_HOST, BROWSER_UA, CAMPAIGNS, TestApp, link, metric};

crate::store_tests! {
// Seed: test_click_count_increment (5 clicks → total_clicks = 5).
async fn five_clicks_on_one_uid_and_source_count_five(db) {
    let app = TestApp::spawn(&db, &[]);
    for _ in 0..5 {
        let resp = app.track(&link(123, "U_TEST_001", 999, "")).await;
        assert_eq!(resp.status(), 302);
    }
    assert_eq!(db.summary("U_TEST_001", 999).await, Some((5, None)));
    assert_eq!(db.campaign_clicks(123).await, 5);
    assert_eq!(db.count("component_interaction_logs").await, 5);
    assert_eq!(db.messages_of("U_TEST_001").await.len(), 5);
    assert_eq!(db.members_named("U_TEST_001").await, 1);
}

// Seed: test_concurrent_clicks_no_deadlock (50 workers × 10 clicks), with exact totals.
async fn fifty_concurrent_workers_give_exact_totals_in_every_table(db) {
    let app = TestApp::spawn(&db, &[]);
    let workers = (0..50).map(|w| {
        let app = &app;
        async move {
            let mut statuses = Vec::new();
            for _ in 0..10 {
                let resp = app
                    .track(&link(123, &format!("U_WORKER_{w}"), 456, ""))
                    .await;
                statuses.push(resp.status().as_u16());
            }
            statuses
        }
    });
    let statuses: Vec<u16> = join_all(workers).await.into_iter().flatten().collect();
    assert_eq!(statuses.len(), 500);
    assert!(
        statuses.iter().all(|s| *s == 302),
        "non-302 responses: {statuses:?}"
    );

    assert_eq!(db.campaign_clicks(123).await, 500);
    assert_eq!(db.count("component_interaction_logs").await, 500);
    assert_eq!(db.count("messages").await, 500);
    assert_eq!(db.count("members").await, 50);
    assert_eq!(db.count("ryan_click_demo").await, 50);
    for w in 0..50 {
        assert_eq!(
            db.summary(&format!("U_WORKER_{w}"), 456).await,
            Some((10, None)),
            "worker {w}"
        );
    }
    assert_eq!(db.count("track_rejects").await, 0);
}

// Seed: test_concurrent_tag_merge_no_loss (10 concurrent clicks, tags A..J, one new row).
async fn ten_concurrent_clicks_with_different_tags_keep_all_tags(db) {
    let app = TestApp::spawn(&db, &[]);
    let tags = ["A", "B", "C", "D", "E", "F", "G", "H", "I", "J"];
    let responses = join_all(
        tags.iter()
            .map(|t| app.track(link(123, "U_TAG_CONCURRENT", 777, t))),
    )
    .await;
    assert!(responses.iter().all(|r| r.status() == 302));

    let (total, stored) = db
        .summary("U_TAG_CONCURRENT", 777)
        .await
        .expect("summary row");
    assert_eq!(total, 10);
    let stored = stored.expect("tags stored");
    let stored: Vec<&str> = stored.split(',').collect();
    let unique: BTreeSet<&str> = stored.iter().copied().collect();
    assert_eq!(unique, tags.into_iter().collect(), "stored: {stored:?}");
    assert_eq!(stored.len(), 10, "each tag once: {stored:?}");
}

async fn tags_merge_onto_existing_ones_in_arrival_order(db) {
    let app = TestApp::spawn(&db, &[]);
    for tag in ["A,B", "B,C", "", "A", "D"] {
        assert_eq!(
            app.track(&link(456, "U_ORDER", 100, tag)).await.status(),
            302
        );
    }
    assert_eq!(
        db.summary("U_ORDER", 100).await,
        Some((5, Some("A,B,C,D".into())))
    );
}

async fn a_click_writes_every_table_as_the_spec_says(db) {
    let app = TestApp::spawn(&db, &[]);
    let before = time::OffsetDateTime::now_utc().unix_timestamp();
    let resp = app
        .track("cid=789&uid=Uabc&type=button_url&src=300&tag=%20X%20,Y,X&to=https%3A%2F%2Fexample.com%2Fp%3Fq%3D1")
        .await;
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], "https://example.com/p?q=1");
    assert_eq!(resp.headers()["cache-control"], "no-store");

    let rows = db.interaction("Uabc").await;
    assert_eq!(rows.len(), 1);
    let (cid, itype, value, at, ua, click_id) = &rows[0];
    assert_eq!(
        (*cid, itype.as_str(), value.as_str()),
        (789, "button_url", "https://example.com/p?q=1")
    );
    assert_eq!(ua.as_deref(), Some(BROWSER_UA));
    let uuid = uuid::Uuid::parse_str(click_id.as_deref().expect("click_id stored")).expect("click_id is a uuid");
    assert_eq!(uuid.get_version_num(), 7);
    let at = time::PrimitiveDateTime::parse(
        at,
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    )
    .expect("triggered_at format")
    .assume_utc()
    .unix_timestamp();
    assert!(
        (before - 1..=before + 5).contains(&at),
        "triggered_at {at} vs now {before}"
    );

    assert_eq!(
        db.messages_of("Uabc").await,
        [format!(
            r#"{{"event":"campaign_click","campaign_id":789,"target":"https://{ALLOWED_HOST}/p?q=1"}}"#
        )]
    );
    assert_eq!(db.summary("Uabc", 300).await, Some((1, Some("X,Y".into()))));
    assert_eq!(db.campaign_clicks(789).await, 1);
}

async fn an_anonymous_click_counts_the_campaign_and_logs_only(db) {
    let app = TestApp::spawn(&db, &[]);
    for query in [
        "cid=456&to=https%3A%2F%2Fexample.com%2F",
        "cid=456&uid=&src=5&tag=A&to=https%3A%2F%2Fexample.com%2F",
    ] {
        assert_eq!(app.track(query).await.status(), 302);
    }
    assert_eq!(db.campaign_clicks(456).await, 2);
    assert_eq!(db.logged_uids().await, ["", ""]);
    assert_eq!(db.count("members").await, 0);
    assert_eq!(db.count("messages").await, 0);
    assert_eq!(db.count("ryan_click_demo").await, 0);
}

async fn every_interaction_type_is_accepted_by_the_schema(db) {
    let app = TestApp::spawn(&db, &[]);
    let types = clicktrack::domain::InteractionType::ALL;
    for t in types {
        let q = format!("cid=123&uid=U_TYPES&type={t}&to=https%3A%2F%2Fexample.com%2F");
        assert_eq!(app.track(q).await.status(), 302, "{t}");
    }
    let stored: BTreeSet<String> = db
        .interaction("U_TYPES")
        .await
        .into_iter()
        .map(|row| row.1)
        .collect();
    let want: BTreeSet<String> = types.iter().map(|t| t.to_string()).collect();
    assert_eq!(stored, want);
    assert_eq!(db.count("track_rejects").await, 0);
}

// P2: several instances on one database stay exact (here: two processes on one SQLite file).
async fn two_processes_on_one_database_stay_exact(db) {
    // Members that exist before (with names, as the marketing app creates them) and new ones.
    let now = "2026-01-01 00:00:00";
    for i in 0..5 {
        db.execute(&format!(
            "INSERT INTO members (line_uid, line_display_name, created_at, updated_at) \
             VALUES ('U_OWN_{i}', 'Guest {i}', '{now}', '{now}')"
        ))
        .await;
    }
    // One journal per process.
    let second = db.journal_path("second");
    let apps = [TestApp::spawn(&db, &[]), TestApp::spawn(&db, &["--spool-path", &second])];
    let tags: Vec<String> = (0..20).map(|i| format!("T{i:02}")).collect();
    let clients = (0..40).map(|w| {
        let (app, tags) = (&apps[w % 2], &tags);
        async move {
            let mut ok = 0;
            for i in 0..25 {
                // Everyone hits one hot (uid, src) row and one campaign, plus a member of their
                // own: U_OWN_0..4 exist already, U_OWN_5..9 are created by the first click.
                let hot = app.track(link(CAMPAIGNS[0], "U_HOT", 1, &tags[(w + i) % tags.len()])).await;
                let own = app.track(link(CAMPAIGNS[1], &format!("U_OWN_{}", w % 10), 2, "Z")).await;
                ok += u32::from(hot.status() == 302) + u32::from(own.status() == 302);
            }
            ok
        }
    });
    let ok: u32 = join_all(clients).await.into_iter().sum();
    assert_eq!(ok, 2000, "every request got its 302");

    // The strict form of the lost-tag property, across processes: K concurrent first clicks on
    // one new (uid, src), each with its own tag, half to each instance → all K tags, once.
    // Each instance clicks another campaign: batches sharing a campaign serialise on its
    // counter row, which would hide a race on the summary row.
    let burst: Vec<String> = (0..40).map(|i| format!("B{i:02}")).collect();
    let responses = join_all(
        burst
            .iter()
            .enumerate()
            .map(|(i, tag)| apps[i % 2].track(link(CAMPAIGNS[1 + i % 2], "U_BURST", 3, tag))),
    )
    .await;
    assert!(responses.iter().all(|r| r.status() == 302));
    let (total, stored) = db.summary("U_BURST", 3).await.expect("burst row");
    assert_eq!(total, 40);
    let stored = stored.expect("tags");
    let mut stored: Vec<&str> = stored.split(',').collect();
    stored.sort_unstable();
    assert_eq!(stored, burst.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(db.summary("U_HOT", 1).await.map(|s| s.0), Some(1000));
    let stored = db.summary("U_HOT", 1).await.and_then(|s| s.1).expect("tags");
    let stored: Vec<&str> = stored.split(',').collect();
    assert_eq!(stored.len(), 20, "each tag once: {stored:?}");
    assert_eq!(stored.iter().copied().collect::<BTreeSet<&str>>(), tags.iter().map(String::as_str).collect());
    assert_eq!(db.campaign_clicks(CAMPAIGNS[0]).await, 1000);
    assert_eq!(db.campaign_clicks(CAMPAIGNS[1]).await, 1000 + 20);
    assert_eq!(db.campaign_clicks(CAMPAIGNS[2]).await, 20);
    assert_eq!(db.count("members").await, 12);
    for uid in ["U_HOT", "U_OWN_0", "U_OWN_9"] {
        assert_eq!(db.members_named(uid).await, 1, "one member for {uid}");
    }
    assert_eq!(db.summary("U_OWN_3", 2).await, Some((100, Some("Z".into()))));
    assert_eq!(db.summary_name("U_OWN_3", 2).await.as_deref(), Some("Guest 3"));
    assert_eq!(db.summary_name("U_OWN_7", 2).await, None);
    assert_eq!(db.summary_clicks_total().await, 2040);
    assert_eq!(db.count("component_interaction_logs").await, 2040);
    assert_eq!(db.count("messages").await, 2040);
    // Every click carries one tag: one per-click tag row each, none lost, none twice.
    assert_eq!(db.count("track_click_tags").await, 2040);
    // The rollups of two processes' batches on the same hot rows: a recount of the log.
    crate::rollups::assert_rollups_match_log(&db).await;
    // What the contention cost, for the record (a retry is fine; a lost click is not).
    for app in &apps {
        let m = app.metrics().await;
        let retries: f64 = m
            .lines()
            .filter(|l| l.starts_with("track_batch_retries_total"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .fold(0.0, |a, b| a + b);
        eprintln!("{:?}: batch retries on one instance: {retries}", db.kind);
        assert_eq!(metric(&m, "track_clicks_not_written_total"), 0.0);
    }
}
}
