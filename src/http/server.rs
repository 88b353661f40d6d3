//! The accept loop of both listeners: what `axum::serve` does (HTTP/1, the peer address for
//! `ConnectInfo`, a graceful stop that lets requests in flight finish), plus the one thing it
//! cannot: a request hyper cannot parse (a raw non-UTF-8 or control byte in the request line,
//! headers past hyper's limits) gets hyper's bare 400 or 431 before any handler runs, and
//! axum drops that error silently. Here it is counted, so that it shows in a metric like every
//! other refused request (`track_requests_total{status="unparsable"}` on the public listener).

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::telemetry::metrics;

/// Which listener, for what is counted of its unparsable requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Public,
    Admin,
}

/// Serve `router` on `listener` until `stop` resolves; then stop accepting, let every open
/// connection finish its request in flight, and return once all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    which: Listener,
    stop: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(&error).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            async move { router.oneshot(request.map(axum::body::Body::new)).await }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                connection_failed(&error, which);
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A connection ended with an error: an unparsable request is counted (hyper has answered it
/// 400 or 431); a client that went away is not worth a line.
fn connection_failed(error: &hyper::Error, which: Listener) {
    if error.is_parse() || error.is_parse_too_large() {
        tracing::debug!(error = %error, listener = ?which, "request hyper could not parse");
        if which == Listener::Public {
            metrics::request(
                metrics::NO_TYPE,
                metrics::status::UNPARSABLE,
                Duration::ZERO,
            );
        }
    } else {
        tracing::trace!(error = %error, "connection closed with an error");
    }
}

/// As axum and hyper do: a connection reset before it was accepted is nothing; anything
/// else (too many open files) is logged, and the loop waits a second instead of spinning.
async fn accept_failed(error: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %error, "accept failed; trying again in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
