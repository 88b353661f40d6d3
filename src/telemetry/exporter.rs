//! What a scrape of `/metrics` does: sample the values that are only known on demand (the
//! store's connection pool, the process's memory, CPU and file descriptors), then render
//! everything in the Prometheus text format.
//!
//! Sampling at scrape time rather than on a timer means every scrape sees fresh values and an
//! idle service does no work for them.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use metrics_process::Collector;

use super::metrics;
use crate::store::Store;

#[derive(Clone)]
pub struct Exporter {
    handle: PrometheusHandle,
    process: Arc<Collector>,
    store: Store,
}

impl Exporter {
    pub fn new(handle: PrometheusHandle, store: Store) -> Exporter {
        let process = Collector::default();
        process.describe();
        // Present from the first scrape like every other series.
        process.collect();
        Exporter {
            handle,
            process: Arc::new(process),
            store,
        }
    }

    pub fn render(&self) -> String {
        metrics::db_pool(self.store.pool_stats());
        self.process.collect();
        self.handle.render()
    }
}
