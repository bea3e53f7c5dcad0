//! Rollouts, pure: a bundle's compiled strategy and the planner that, given agents' reports and
//! the time, says which clusters move next and when a wave is done, failed or rolled back.

pub mod membership;
pub mod planner;
pub mod strategy;
