//! Rendering git folders to bundle manifests: the one rendering path shared by the server's git
//! sources and the offline `flotilla render` command.
//!
//! A checkout is turned into bundles in three steps:
//! 1. [`bundle_folders`] finds the deployable folders under a GitRepo's paths, by Rancher Fleet's
//!    rules (folders with a fleet.yaml, and the path's own folder when it holds loose YAML).
//! 2. [`render_folder`] renders one folder for the whole fleet: raw YAML (with Fleet's overlays),
//!    Kustomize (the real engine) or Helm (`helm template`), once with the folder's options and
//!    once per fleet.yaml target customization that changes the result.
//! 3. [`bundle_spec`] composes the Bundle spec under the GitRepo's targets; [`bundle_name`]
//!    names it.
//!
//! Everything is blocking. Nothing touches the network except the engines themselves (a chart
//! from a chart repository or registry, a remote kustomize base), and only for the hosts
//! [`Tools::with_allowed_hosts`] allows (none by default); no rendering reads a file outside the
//! checkout root (`guard` checks kustomizations and charts before an engine runs). Every error names the file,
//! relative to the checkout root, and says what to fix. Equal inputs give equal output: objects
//! are ordered and their keys sorted, so the server's content digest only moves when a commit
//! changes what is rendered.

mod discover;
mod engines;
mod fleetyaml;
mod guard;
mod manifests;
mod naming;
mod overlay;
mod render;
mod spec;
mod tools;
mod values;

use std::collections::BTreeMap;

use flotilla_api::{BundleTarget, DriftIgnore, LabelSelector};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use discover::bundle_folders;
pub use naming::bundle_name;
pub use render::{declared_name, render_folder};
pub use spec::bundle_spec;
pub use tools::Tools;

/// A rendering failed. `file` is the file (or folder) to look at, relative to the checkout root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError {
    pub file: Option<String>,
    pub message: String,
}

impl RenderError {
    pub(crate) fn in_file(file: impl Into<String>, message: impl Into<String>) -> RenderError {
        RenderError {
            file: Some(file.into()),
            message: message.into(),
        }
    }

    pub(crate) fn plain(message: impl Into<String>) -> RenderError {
        RenderError {
            file: None,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{file}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for RenderError {}

/// One folder rendered for the whole fleet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenderedFolder {
    /// The folder, relative to the checkout root (`.` for the root).
    pub folder: String,
    /// fleet.yaml's `name`: the bundle's name instead of the derived one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// fleet.yaml's `labels`: labels of the Bundle object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// fleet.yaml's `defaultNamespace`: where namespaced objects without a namespace go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_namespace: Option<String>,
    #[serde(default)]
    pub keep_resources: bool,
    #[serde(default)]
    pub paused: bool,
    /// fleet.yaml's `dependsOn`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<DependsOn>,
    /// fleet.yaml's `diff.comparePatches`, as drift-ignore rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift_ignore: Vec<DriftIgnore>,
    /// fleet.yaml's `rolloutStrategy`, mapped onto the bundle's `spec.rollout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<flotilla_api::RolloutStrategy>,
    /// fleet.yaml's `overrideTargets`: when set, they replace the GitRepo's targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_targets: Option<Vec<BundleTarget>>,
    /// The default rendering, in a stable order.
    pub resources: Vec<Value>,
    /// fleet.yaml's target customizations, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub customizations: Vec<RenderedCustomization>,
}

/// A fleet.yaml `dependsOn` entry: a bundle by name, or bundles by label selector (the Bundle
/// spec's own dependency type).
pub type DependsOn = flotilla_api::BundleDependency;

/// One fleet.yaml target customization and its rendering.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenderedCustomization {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_namespace: Option<String>,
    #[serde(default)]
    pub do_not_deploy: bool,
    /// The customization's own rendering; `None` when it equals the folder's default rendering
    /// (or the customization does not deploy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<Value>>,
}
