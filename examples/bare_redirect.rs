//! The benchmark's ceiling: an HTTP server on the same stack (tokio + axum) that only answers
//! `/__track` with a 302 and does nothing else. `scripts/bench.sh` runs the same load against
//! it and against clicktrack and reports the ratio.
//!
//! Usage: `bare_redirect 127.0.0.1:18081`

use axum::Router;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, LOCATION};
use axum::routing::get;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".into());
    let app = Router::new().route(
        "/__track",
        get(|| async {
            (
                StatusCode::FOUND,
                [
                    (LOCATION, "https://example.com/"),
                    (CACHE_CONTROL, "no-store"),
                ],
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("bare_redirect listening on {addr}");
    axum::serve(listener, app).await
}
