//! clicktrack records clicks on campaign links and redirects to their targets, exactly once
//! per click under any concurrency. A click is redirected once it is durable (in the journal,
//! or with `--ack store` in the database); when neither can take it the person still gets the
//! 302 and the loss is logged, counted (`not_durable`) and alerted on (docs/guarantees.md).
//!
//! # Layout
//! - [`config`]: the command line (flags + environment), validated into settings.
//! - [`app`]: `serve`: wire the store, the pipeline and the listeners; drain on shutdown.
//! - [`commands`]: `migrate`, `campaign add`, `spool status`, `spool replay`, `link`, `stats`,
//!   `purge`, `member erase`.
//! - [`http`]: the two routers; `track` is the `/__track` endpoint, `pages` its responses.
//! - [`domain`]: pure rules: query parsing, targets and the redirect policy, clicks, tags,
//!   link signatures, the bot list, the client address.
//! - [`dedup`]: is this click a repeat? A local TTL cache, shared through Redis.
//! - [`pipeline`]: bounded queue → appender (group commit into the journal, or the store with
//!   `--ack store`) → applier (journal → store in large batches: retry, bisection), the
//!   overflow path, health, apply lag.
//! - [`journal`]: where a click is durable before the store has it: the interface and the
//!   local segment files (locked, bound to its store, checksummed frames of a versioned
//!   record format), and the NATS
//!   JetStream stream shared by a fleet.
//! - [`store`]: where batches become rows: the batch plan and one module per backend.
//! - [`db`]: what every SQL user shares and that knows nothing of clicks: dialects, database
//!   URLs, the error classifier, time format, SQLite options, `on_pool!`.
//! - [`stats`]: campaign results (API, dashboard, `clicktrack stats`) from a read-only pool.
//! - [`telemetry`]: logging setup and every metric.

pub mod app;
pub mod commands;
pub mod config;
pub mod db;
pub mod dedup;
pub mod domain;
pub mod http;
pub mod journal;
pub mod pipeline;
pub mod stats;
pub mod store;
pub mod telemetry;
