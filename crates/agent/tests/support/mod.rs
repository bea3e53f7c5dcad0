//! Helpers shared by the agent's integration tests.

// Each test binary includes this module and uses only some of the helpers and re-exports.
#![allow(dead_code, unused_imports)]

pub mod driver;
pub mod fleet;
pub mod stand_in_apiserver;
