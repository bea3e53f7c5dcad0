//! Composing a Bundle spec from a rendered folder and its GitRepo's targets.

use flotilla_api::{BundleSpec, BundleTarget, DriftPolicy, LabelSelector};

use crate::RenderedFolder;

/// The Bundle spec for `rendered` under a GitRepo's `targets` and `keep_resources`.
///
/// flotilla takes the first target matching a cluster; in Fleet, GitRepo targets decide where a
/// bundle goes and fleet.yaml customizations only customize within that. So for each GitRepo
/// target `g` in order (fleet.yaml's `overrideTargets` replace them when set), each customization
/// `c` in order becomes a target matching `g` AND `c`, named `<g>/<c>` (name or index), with
/// `g`'s customization plus `c`'s `defaultNamespace`, `c`'s `doNotDeploy` and `c`'s rendering;
/// then `g` itself follows. A combination no cluster can match (the same label required with two
/// values, two cluster names) is left out; a customization with no matcher matches nothing (as in
/// Fleet). Two different cluster groups combine as `clusterGroup` and `clusterGroups` (a cluster
/// must be in both). The folder's `defaultNamespace` is the namespace of every target without
/// one.
pub fn bundle_spec(
    rendered: &RenderedFolder,
    targets: &[BundleTarget],
    keep_resources: bool,
) -> Result<BundleSpec, String> {
    let gitrepo_targets = rendered.override_targets.as_deref().unwrap_or(targets);
    let mut out = Vec::new();
    for (g_index, g) in gitrepo_targets.iter().enumerate() {
        let g_name = g.name.clone().unwrap_or_else(|| g_index.to_string());
        for (c_index, c) in rendered.customizations.iter().enumerate() {
            if c.cluster_selector.is_none() && c.cluster_group.is_none() && c.cluster_name.is_none()
            {
                continue;
            }
            let c_name = c.name.clone().unwrap_or_else(|| c_index.to_string());
            let name = format!("{g_name}/{c_name}");
            let Some(cluster_selector) =
                and_selectors(g.cluster_selector.as_ref(), c.cluster_selector.as_ref())
            else {
                continue;
            };
            // Both groups must hold: the customization's group joins the target's others.
            let (cluster_group, cluster_groups) = match (&g.cluster_group, &c.cluster_group) {
                (Some(ours), Some(theirs)) if ours != theirs => {
                    let mut more = g.cluster_groups.clone();
                    more.push(theirs.clone());
                    (Some(ours.clone()), more)
                }
                (ours, theirs) => (
                    ours.clone().or_else(|| theirs.clone()),
                    g.cluster_groups.clone(),
                ),
            };
            let cluster_name = match (&g.cluster_name, &c.cluster_name) {
                // No cluster has two names: the combination never matches.
                (Some(ours), Some(theirs)) if ours != theirs => continue,
                (ours, theirs) => ours.clone().or_else(|| theirs.clone()),
            };
            let mut customization = g.customization.clone();
            if let Some(namespace) = &c.default_namespace {
                customization.namespace = Some(namespace.clone());
            }
            out.push(BundleTarget {
                name: Some(name),
                cluster_selector,
                cluster_group,
                cluster_groups,
                cluster_name,
                customization,
                do_not_deploy: g.do_not_deploy || c.do_not_deploy,
                resources: c.resources.clone().or_else(|| g.resources.clone()),
            });
        }
        let mut plain = g.clone();
        plain.name = Some(g_name);
        out.push(plain);
    }
    if let Some(namespace) = &rendered.default_namespace {
        for target in &mut out {
            if target.customization.namespace.is_none() {
                target.customization.namespace = Some(namespace.clone());
            }
        }
    }
    let spec = BundleSpec {
        resources: rendered.resources.clone(),
        targets: out,
        paused: rendered.paused,
        keep_resources: keep_resources || rendered.keep_resources,
        drift: DriftPolicy {
            ignore: rendered.drift_ignore.clone(),
            ..DriftPolicy::default()
        },
        depends_on: rendered.depends_on.clone(),
        rollout: rendered.rollout.clone(),
        revision_history_limit: None,
    };
    flotilla_core::targeting::compile_targets(&spec.targets)?;
    Ok(spec)
}

/// The selector matching what both `a` and `b` match: `Some(None)` when neither is set, `None`
/// when no label set can match both (a label required with two different values).
fn and_selectors(
    a: Option<&LabelSelector>,
    b: Option<&LabelSelector>,
) -> Option<Option<LabelSelector>> {
    let (a, b) = match (a, b) {
        (None, None) => return Some(None),
        (Some(one), None) | (None, Some(one)) => return Some(Some(one.clone())),
        (Some(a), Some(b)) => (a, b),
    };
    let mut out = a.clone();
    for (key, value) in &b.match_labels {
        match out.match_labels.get(key) {
            Some(existing) if existing != value => return None,
            _ => {
                out.match_labels.insert(key.clone(), value.clone());
            }
        }
    }
    for requirement in &b.match_expressions {
        if !out.match_expressions.contains(requirement) {
            out.match_expressions.push(requirement.clone());
        }
    }
    Some(Some(out))
}
