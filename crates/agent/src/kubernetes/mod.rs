//! The Kubernetes driver: discovery, server-side apply, prune by ownership labels, health and
//! drift, with standard kube-rs so that it runs unchanged on real clusters.

pub mod cluster;
pub mod drift;
pub mod health;
pub mod inventory;
mod report;

pub use cluster::KubernetesCluster;
