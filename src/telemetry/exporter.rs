//! What a scrape of `/metrics` does: sample the values that are only known on demand (the
//! store's connection pool, the journal's apply lag, the process's memory, CPU and file
//! descriptors), then render everything in the Prometheus text format.
//!
//! Sampling at scrape time rather than on a timer means every scrape sees fresh values and an
//! idle service does no work for them. The samplers are closures handed in by `app`, so this
//! module needs to know nothing about the store or the pipeline.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use metrics_process::Collector;

/// Sets one or more gauges from live state, just before a scrape is rendered.
pub type Sampler = Box<dyn Fn() + Send + Sync>;

#[derive(Clone)]
pub struct Exporter {
    handle: PrometheusHandle,
    process: Arc<Collector>,
    samplers: Arc<[Sampler]>,
}

impl Exporter {
    pub fn new(handle: PrometheusHandle, samplers: Vec<Sampler>) -> Exporter {
        let process = Collector::default();
        process.describe();
        // Present from the first scrape like every other series.
        process.collect();
        Exporter {
            handle,
            process: Arc::new(process),
            samplers: samplers.into(),
        }
    }

    pub fn render(&self) -> String {
        for sample in self.samplers.iter() {
            sample();
        }
        self.process.collect();
        self.handle.render()
    }
}
