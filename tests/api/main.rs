//! The one integration-test binary: every test spawns the real server (see `helpers`).

mod helpers;

mod cli;
mod dashboard;
mod dedup;
mod deploy;
mod exactness;
mod existing_schema;
mod hostile;
mod idempotency;
mod journal;
mod locust;
mod migrating;
mod nats;
mod nats_cluster;
mod nginx;
mod observability;
mod proxy;
mod readiness;
mod readme;
mod rejects;
mod retention;
mod rollups;
mod shared_tables;
mod shutdown;
mod signing;
mod spool;
mod stats;
mod stats_plans;
mod targets;
