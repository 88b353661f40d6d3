//! Logs and metrics: how clicktrack makes every failure visible.
//!
//! Logs are `tracing` events (JSON by default when stderr is not a terminal); metrics are
//! Prometheus series named in `metrics`. A failure is logged once, where it is handled, with
//! its context, and counted in the same place.

mod exporter;
pub mod metrics;

pub use exporter::{Exporter, Sampler};

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Something an operator must be able to see. `emit` writes its log line and changes its
/// metric together, so the two cannot drift apart. Each event is a struct defined next to the
/// code that raises it (as vector's internal events are); this module knows none of them.
pub trait Event {
    fn emit(self);
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// JSON when stderr is not a terminal, pretty otherwise.
    Auto,
    Json,
    Pretty,
}

/// Install the global subscriber. The filter comes from `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    // Colour codes only for a terminal: in a pipe or a file (journald, `2> log`) they are
    // noise around every field. NO_COLOR (no-color.org) turns them off on a terminal too.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    // A second init (tests) is harmless: the first subscriber stays.
    let installed = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    if installed.is_err() {
        tracing::debug!("a global subscriber was already installed");
    }
}

/// A LINE uid shortened for logs: enough to correlate, not enough to identify.
pub fn short_uid(uid: Option<&str>) -> String {
    match uid {
        None => "-".to_owned(),
        Some(uid) => {
            let head = crate::domain::click::truncate_utf8(uid, 6);
            format!("{head}…({})", uid.len())
        }
    }
}
