//! Pure flotilla domain logic: label selectors, targeting, manifest customization, digests and
//! etags, status roll-up and the agent sync machine.
//!
//! Invariant: this crate does no IO and knows no async runtime or clock; time is passed in.

pub mod customize;
pub mod selector;
