//! clicktrack records clicks on campaign links and redirects to their targets, exactly once
//! per click under any concurrency, and never redirects a click it has not made durable.
//!
//! # Layout
//! - [`config`]: the command line (flags + environment), validated into settings.
//! - [`app`]: `serve`: wire the store, the pipeline and the listeners; drain on shutdown.
//! - [`commands`]: `migrate`, `campaign add`, `spool status`, `spool replay`, `link`.
//! - [`http`]: the two routers; `track` is the `/__track` endpoint, `pages` its responses.
//! - [`domain`]: pure rules: query parsing, targets and the redirect policy, clicks, tags,
//!   link signatures, the bot list, the client address.
//! - [`dedup`]: is this click a repeat? A local TTL cache, shared through Redis.
//! - [`pipeline`]: bounded queue → batcher → the one writer (retry, bisection, spill to the
//!   spool, replay), the overflow path, health.
//! - [`spool`]: the durable local FIFO for clicks the store cannot take now; replayed later.
//! - [`store`]: where batches become rows: the batch plan and one module per backend.
//! - [`stats`]: campaign results (API, dashboard, `clicktrack stats`) from a read-only pool.
//! - [`telemetry`]: logging setup and every metric.

pub mod app;
pub mod commands;
pub mod config;
pub mod dedup;
pub mod domain;
pub mod http;
pub mod pipeline;
pub mod spool;
pub mod stats;
pub mod store;
pub mod telemetry;
