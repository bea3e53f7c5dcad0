//! `flotilla sim`: many simulated clusters in one process. Each is driven by the agent's own
//! `SyncMachine` (the same brain as `flotilla agent`) and makes the real `/agent/v1` calls over a
//! small pool of HTTP/2 connections; a timer wheel schedules them, so there is no task or timer
//! per cluster and each costs a few hundred bytes.

mod agent;
pub mod run;
mod stats;
mod verdicts;
pub mod wheel;

pub use run::{SimConfig, SimSummary, Simulator, run};
pub use stats::{PhaseLatency, Snapshot, Stats};
