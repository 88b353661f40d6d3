//! Pure rules of the link contract (docs/link-contract.md): no I/O, no clocks, no globals.
//!
//! Everything that decides whether a request is a click, and what that click is, lives here so
//! it can be tested exhaustively without a server or a database.

pub mod bot;
pub mod click;
pub mod client_addr;
pub mod ids;
pub mod interaction;
pub mod link;
pub mod query;
pub mod signature;
pub mod tags;

#[cfg(test)]
mod hostile;
pub mod target;
pub mod user_agent;

#[cfg(test)]
pub use click::test_click;
pub use click::{Click, Record, Reject, RejectReason};
pub use ids::{CampaignId, LineUid};
pub use interaction::InteractionType;
pub use target::{RedirectPolicy, Target, TargetError};
