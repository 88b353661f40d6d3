//! SIGTERM under load: stop accepting, finish in-flight requests, make everything accepted
//! durable, apply the journal within --drain-timeout-ms, exit 0. Every click that received a
//! 302 must be in the database afterwards (not merely in the journal).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::{TestApp, signal};

crate::store_tests! {
async fn sigterm_under_load_loses_no_redirected_click(db) {
    let mut app = TestApp::spawn(&db, &[]);
    let ledger: Arc<Mutex<Vec<String>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let sent = Arc::new(AtomicUsize::new(0));

    let mut workers = Vec::new();
    for w in 0..40 {
        let (client, base) = (app.client.clone(), app.url("/__track"));
        let (ledger, failures, sent) = (ledger.clone(), failures.clone(), sent.clone());
        workers.push(tokio::spawn(async move {
            for i in 0..100_000 {
                let uid = format!("S{w}_{i}");
                let url = format!("{base}?cid=123&uid={uid}&src=1&to=https%3A%2F%2Fexample.com%2F");
                sent.fetch_add(1, Ordering::Relaxed);
                match client.get(url).send().await {
                    Ok(resp) if resp.status() == 302 => ledger.lock().expect("ledger").push(uid),
                    Ok(resp) => failures
                        .lock()
                        .expect("failures")
                        .push(format!("{uid}: {}", resp.status())),
                    // Connection refused or closed: the server is shutting down.
                    Err(_) => break,
                }
            }
        }));
    }

    // Let the load build up, then terminate in the middle of it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while ledger.lock().expect("ledger").len() < 400 {
        assert!(
            Instant::now() < deadline,
            "load did not start:\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    signal(app.pid(), "TERM");
    let (status, app) =
        tokio::task::spawn_blocking(move || (app.wait(Duration::from_secs(60)), app))
            .await
            .expect("wait for exit");
    for w in workers {
        w.await.expect("worker");
    }
    assert!(status.success(), "exit status {status:?}:\n{}", app.logs());
    assert!(
        failures.lock().expect("failures").is_empty(),
        "{:?}",
        failures.lock()
    );

    let redirected = ledger.lock().expect("ledger").clone();
    let recorded: HashSet<String> = db.logged_uids().await.into_iter().collect();
    let missing: Vec<&String> = redirected
        .iter()
        .filter(|u| !recorded.contains(*u))
        .collect();
    assert!(
        missing.is_empty(),
        "{} redirected clicks missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // Every recorded click was counted everywhere, too.
    assert_eq!(db.campaign_clicks(123).await as usize, recorded.len());
    assert_eq!(db.summary_clicks_total().await as usize, recorded.len());
    assert!(recorded.len() <= sent.load(Ordering::Relaxed));
    assert!(
        app.logs().contains("appender stopped: queue drained")
            && app.logs().contains("applier stopped: journal empty"),
        "{}",
        app.logs()
    );
}
}
