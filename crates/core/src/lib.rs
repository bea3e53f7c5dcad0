//! Pure flotilla domain logic: label selectors, targeting, manifest customization, digests and
//! etags, and the agent sync machine.
//!
//! Invariant: this crate does no IO and knows no async runtime or clock; time and randomness are
//! passed in.

pub mod access;
pub mod audit;
pub mod customize;
pub mod digest;
pub mod documents;
pub mod failover;
pub mod field_error;
pub mod protocol;
pub mod rollout;
pub mod selector;
pub mod sync;
pub mod targeting;
pub mod validate;
