//! The flotilla agent: drives the sync machine of `flotilla-core` against a server over HTTP
//! and against a cluster through a [`ClusterDriver`].
//!
//! Drivers: [`simulated::SimulatedCluster`] (an in-memory cluster for demos, tests and the
//! simulator). The Kubernetes driver uses the same loop.

pub mod client;
pub mod driver;
pub mod kubernetes;
pub mod runner;
pub mod simulated;
pub mod state_dir;

pub use driver::ClusterDriver;
pub use runner::{AgentConfig, run};

/// Label put on every object the agent applies, naming its bundle: prune finds objects by it.
pub const BUNDLE_LABEL: &str = "flotilla.dev/bundle";
/// Annotation naming the deployment id an object was applied from.
pub const DEPLOYMENT_ANNOTATION: &str = "flotilla.dev/deployment";
/// Annotation naming the content digest of the bundle revision an object came from.
pub const DIGEST_ANNOTATION: &str = "flotilla.dev/content-digest";
/// Test annotation on a manifest asking the simulated cluster to fail its apply (`fail`) or keep
/// it not ready (`not-ready`).
pub const SIMULATE_ANNOTATION: &str = "flotilla.dev/simulate";
