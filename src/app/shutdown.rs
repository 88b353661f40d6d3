//! Stopping: the signals that start a shutdown and the watch that tells both servers.

use tokio::sync::watch;

use super::AppError;
use crate::telemetry::{Event, metrics};

pub(super) fn task_error(
    what: &'static str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> AppError {
    AppError::Task {
        what,
        source: Box::new(e),
    }
}

pub(super) async fn stopped(mut rx: watch::Receiver<bool>) {
    // Err: the sender is gone, which only happens after it sent.
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Resolves on SIGTERM or SIGINT, naming it.
pub(super) async fn shutdown_signal() -> &'static str {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            SignalUnavailable {
                signal: "SIGINT",
                error,
            }
            .emit();
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(error) => {
                SignalUnavailable {
                    signal: "SIGTERM",
                    error,
                }
                .emit();
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => "SIGINT",
        () = term => "SIGTERM",
    }
}

/// A shutdown signal that cannot be listened for: the process then stops only by SIGKILL.
struct SignalUnavailable {
    signal: &'static str,
    error: std::io::Error,
}

impl Event for SignalUnavailable {
    fn emit(self) {
        tracing::error!(operation = "signal", error = %self.error, "cannot listen for {}", self.signal);
        metrics::error("signal", "unavailable");
    }
}
