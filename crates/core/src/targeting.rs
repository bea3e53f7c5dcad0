//! Bundle targeting: which clusters a bundle goes to, which target's customization applies, and
//! the deploy options a cluster receives.

use std::collections::{BTreeMap, BTreeSet};

use flotilla_api::{BundleTarget, Customization, DriftPolicy, agent::DeployOptions};

use crate::selector::Selector;

/// A validated bundle target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub selector: Option<Selector>,
    /// Groups the cluster must belong to, all of them (`clusterGroup` then `clusterGroups`).
    pub groups: Vec<String>,
    pub cluster_name: Option<String>,
    pub customization: Customization,
    /// Clusters this target matches first do not get the bundle.
    pub do_not_deploy: bool,
    /// Content digest of the target's own `resources`, when it replaces the bundle's.
    pub digest: Option<String>,
}

/// Most targets one bundle may have (a deployment records its target's index in 16 bits).
pub const MAX_TARGETS: usize = 4096;

/// Validates a bundle's targets; the error names the target and says what to fix.
pub fn compile_targets(targets: &[BundleTarget]) -> Result<Vec<Target>, String> {
    if targets.len() > MAX_TARGETS {
        return Err(format!(
            "spec.targets: {} targets, at most {MAX_TARGETS}; target cluster groups or selectors instead of clusters one by one",
            targets.len()
        ));
    }
    targets
        .iter()
        .enumerate()
        .map(|(index, target)| {
            let label = match &target.name {
                Some(name) => format!("spec.targets[{index}] ({name})"),
                None => format!("spec.targets[{index}]"),
            };
            if target.cluster_selector.is_none()
                && target.cluster_group.is_none()
                && target.cluster_groups.is_empty()
                && target.cluster_name.is_none()
            {
                return Err(format!(
                    "{label} matches nothing: set clusterSelector (use {{}} for every cluster), clusterGroup or clusterName"
                ));
            }
            let selector = match &target.cluster_selector {
                Some(selector) => Some(
                    Selector::from_api(selector)
                        .map_err(|error| format!("{label}.clusterSelector: {error}"))?,
                ),
                None => None,
            };
            if let Some(namespace) = &target.customization.namespace {
                crate::validate::validate_dns_label(namespace)
                    .map_err(|error| format!("{label}.customization.namespace: {error}"))?;
            }
            for (key, value) in &target.customization.labels {
                crate::selector::validate_label_key(key)
                    .and_then(|()| crate::selector::validate_label_value(value))
                    .map_err(|error| format!("{label}.customization.labels: {error}"))?;
            }
            let digest = match &target.resources {
                Some(resources) => {
                    crate::customize::validate_manifests(resources)
                        .map_err(|error| format!("{label}.resources: {error}"))?;
                    Some(crate::digest::content_digest(
                        &crate::digest::canonical_content(resources),
                    ))
                }
                None => None,
            };
            Ok(Target {
                selector,
                groups: target
                    .cluster_group
                    .iter()
                    .chain(&target.cluster_groups)
                    .cloned()
                    .collect(),
                cluster_name: target.cluster_name.clone(),
                customization: target.customization.clone(),
                do_not_deploy: target.do_not_deploy,
                digest,
            })
        })
        .collect()
}

/// What targeting needs to know about one cluster.
pub struct ClusterView<'a, L: Fn(&str) -> Option<&'a str>> {
    pub name: &'a str,
    /// Looks up a label value.
    pub label: L,
}

impl Target {
    /// Whether this target matches the cluster. `group_selector` resolves a group name to its
    /// selector; a target naming a group that does not exist matches nothing.
    pub fn matches<'a, L: Fn(&str) -> Option<&'a str> + Copy>(
        &self,
        cluster: &ClusterView<'a, L>,
        group_selector: &dyn Fn(&str) -> Option<&'a Selector>,
    ) -> bool {
        if let Some(name) = &self.cluster_name
            && name != cluster.name
        {
            return false;
        }
        if let Some(selector) = &self.selector
            && !selector.matches(cluster.label)
        {
            return false;
        }
        for group in &self.groups {
            match group_selector(group) {
                Some(selector) if selector.matches(cluster.label) => {}
                _ => return false,
            }
        }
        true
    }
}

/// The first target matching the cluster: its customization is the one that applies.
pub fn first_match<'a, L: Fn(&str) -> Option<&'a str> + Copy>(
    targets: &[Target],
    cluster: &ClusterView<'a, L>,
    group_selector: &dyn Fn(&str) -> Option<&'a Selector>,
) -> Option<usize> {
    targets
        .iter()
        .position(|target| target.matches(cluster, group_selector))
}

/// The placeholders a bundle's clusters need resolved: those its resources, its targets' own
/// resources and its targets' patches use.
pub fn vars_needed(resources: &[serde_json::Value], targets: &[BundleTarget]) -> BTreeSet<String> {
    let patches: Vec<_> = targets
        .iter()
        .flat_map(|t| t.customization.patches.iter().cloned())
        .collect();
    let mut vars = crate::customize::referenced_vars(resources, &patches);
    for target in targets {
        if let Some(resources) = &target.resources {
            vars.extend(crate::customize::referenced_vars(resources, &[]));
        }
    }
    vars
}

/// Checks each target's customization against the content it delivers, before anything is
/// stored: every patch must be a JSON object (RFC 7386: any other patch replaces the whole
/// manifest), and the customized manifests must still be valid Kubernetes objects. Placeholders
/// get a stand-in value, since their real values differ per cluster. Without this, every agent
/// of a matching cluster would report the same error for a bundle the server accepted.
pub fn check_customizations(
    resources: &[serde_json::Value],
    targets: &[BundleTarget],
) -> Result<(), String> {
    for (index, target) in targets.iter().enumerate() {
        if target.do_not_deploy {
            continue;
        }
        let label = match &target.name {
            Some(name) => format!("spec.targets[{index}] ({name})"),
            None => format!("spec.targets[{index}]"),
        };
        for (patch_index, patch) in target.customization.patches.iter().enumerate() {
            if !patch.patch.is_object() {
                let found = match &patch.patch {
                    serde_json::Value::Null => "null",
                    serde_json::Value::Bool(_) => "a boolean",
                    serde_json::Value::Number(_) => "a number",
                    serde_json::Value::String(_) => "a string",
                    serde_json::Value::Array(_) => "an array",
                    serde_json::Value::Object(_) => "an object",
                };
                return Err(format!(
                    "{label}.customization.patches[{patch_index}].patch is {found}: a JSON merge patch must be an object (any other value would replace the whole manifest), e.g. {{\"spec\": {{\"replicas\": 3}}}}"
                ));
            }
        }
        let delivered = target.resources.as_deref().unwrap_or(resources);
        let patches = &target.customization.patches;
        let vars = crate::customize::referenced_vars(delivered, patches)
            .into_iter()
            .map(|var| (var, "placeholder".to_string()))
            .collect();
        let options = DeployOptions {
            namespace: target.customization.namespace.clone(),
            labels: target.customization.labels.clone(),
            patches: patches.clone(),
            vars,
            keep_resources: false,
            drift: Default::default(),
        };
        let namespaced =
            |api_version: &str, kind: &str| !crate::customize::is_cluster_scoped(api_version, kind);
        if let Err(error) = crate::customize::customize(delivered, &options, &namespaced) {
            return Err(format!("{label}.customization: {error}"));
        }
    }
    Ok(())
}

/// Builds the deploy options a cluster receives for a bundle: the matched target's customization
/// plus the values of the placeholders the bundle uses (`vars_needed`), resolved for this cluster.
/// A placeholder without a value is left out; the agent reports it as an error naming it.
pub fn deploy_options<'a, L: Fn(&str) -> Option<&'a str> + Copy>(
    customization: &Customization,
    keep_resources: bool,
    drift: &DriftPolicy,
    vars_needed: &BTreeSet<String>,
    cluster: &ClusterView<'a, L>,
) -> DeployOptions {
    let mut vars = BTreeMap::new();
    for var in vars_needed {
        let value = if var == "cluster.name" {
            Some(cluster.name)
        } else if let Some(key) = var.strip_prefix("cluster.labels.") {
            (cluster.label)(key)
        } else if let Some(key) = var.strip_prefix("values.") {
            customization.values.get(key).map(String::as_str)
        } else {
            None
        };
        if let Some(value) = value {
            vars.insert(var.clone(), value.to_string());
        }
    }
    DeployOptions {
        namespace: customization.namespace.clone(),
        labels: customization.labels.clone(),
        patches: customization.patches.clone(),
        vars,
        keep_resources,
        drift: drift.clone(),
    }
}

#[cfg(test)]
mod tests {
    use flotilla_api::LabelSelector;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn target_for(selector: &str, namespace: &str) -> BundleTarget {
        BundleTarget {
            cluster_selector: Some(Selector::parse(selector).unwrap().to_api()),
            customization: Customization {
                namespace: Some(namespace.into()),
                ..Customization::default()
            },
            ..BundleTarget::default()
        }
    }

    fn matched(targets: &[Target], name: &str, labels: &BTreeMap<String, String>) -> Option<usize> {
        let view = ClusterView {
            name,
            label: |key: &str| labels.get(key).map(String::as_str),
        };
        first_match(targets, &view, &|_| None)
    }

    #[test]
    fn first_matching_target_wins() {
        let targets =
            compile_targets(&[target_for("env=prod", "prod"), target_for("", "default")]).unwrap();
        assert_eq!(matched(&targets, "a", &labels(&[("env", "prod")])), Some(0));
        assert_eq!(matched(&targets, "a", &labels(&[("env", "dev")])), Some(1));
    }

    #[test]
    fn target_without_any_matcher_is_rejected() {
        let error = compile_targets(&[BundleTarget::default()]).unwrap_err();
        assert!(error.contains("spec.targets[0]"), "{error}");
        assert!(error.contains("clusterSelector"), "{error}");
    }

    #[test]
    fn invalid_selector_in_target_is_rejected_with_its_path() {
        let target = BundleTarget {
            cluster_selector: Some(LabelSelector {
                match_expressions: vec![flotilla_api::LabelSelectorRequirement {
                    key: "env".into(),
                    operator: "Near".into(),
                    values: vec![],
                }],
                ..LabelSelector::default()
            }),
            ..BundleTarget::default()
        };
        let error = compile_targets(&[target]).unwrap_err();
        assert!(error.contains("spec.targets[0].clusterSelector"), "{error}");
    }

    #[test]
    fn all_matchers_of_a_target_must_match() {
        let target = BundleTarget {
            cluster_selector: Some(Selector::parse("env=prod").unwrap().to_api()),
            cluster_name: Some("store-1".into()),
            ..BundleTarget::default()
        };
        let targets = compile_targets(&[target]).unwrap();
        let prod = labels(&[("env", "prod")]);
        assert_eq!(matched(&targets, "store-1", &prod), Some(0));
        assert_eq!(matched(&targets, "store-2", &prod), None);
        assert_eq!(matched(&targets, "store-1", &labels(&[])), None);
    }

    #[test]
    fn group_target_uses_the_group_selector_and_missing_groups_match_nothing() {
        let target = BundleTarget {
            cluster_group: Some("edge".into()),
            ..BundleTarget::default()
        };
        let targets = compile_targets(&[target]).unwrap();
        let edge = Selector::parse("tier=edge").unwrap();
        let cluster_labels = labels(&[("tier", "edge")]);
        let view = ClusterView {
            name: "a",
            label: |key: &str| cluster_labels.get(key).map(String::as_str),
        };
        let groups = |name: &str| (name == "edge").then_some(&edge);
        assert_eq!(first_match(&targets, &view, &groups), Some(0));
        assert_eq!(first_match(&targets, &view, &|_| None), None);
    }

    #[test]
    fn deploy_options_resolve_only_the_placeholders_used() {
        let cluster_labels = labels(&[("region", "eu"), ("unused", "x")]);
        let view = ClusterView {
            name: "store-7",
            label: |key: &str| cluster_labels.get(key).map(String::as_str),
        };
        let customization = Customization {
            values: labels(&[("replicas", "3")]),
            ..Customization::default()
        };
        let needed: BTreeSet<String> = [
            "cluster.name",
            "cluster.labels.region",
            "cluster.labels.missing",
            "values.replicas",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        let options = deploy_options(
            &customization,
            true,
            &DriftPolicy::default(),
            &needed,
            &view,
        );
        assert_eq!(
            options.vars,
            labels(&[
                ("cluster.labels.region", "eu"),
                ("cluster.name", "store-7"),
                ("values.replicas", "3"),
            ])
        );
        assert!(options.keep_resources);
    }
}
