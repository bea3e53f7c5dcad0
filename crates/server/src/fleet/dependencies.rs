//! References between bundles and to cluster groups: `dependsOn` cycles (refused before they are
//! stored, since every bundle on one would stay Pending forever) and references that resolve to
//! nothing (shown as conditions on the bundle, since what they name may be created later).

use std::collections::{BTreeMap, HashMap, VecDeque};

use flotilla_api::BundleSpec;

use super::{BundleEntry, Dependency, Fleet};

/// A bundle about to be written, seen by the cycle check in place of the model's version.
pub struct CandidateBundle<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub dependencies: &'a [Dependency],
}

/// A reference in a bundle's spec that names nothing in the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// `spec.targets[target]` names a cluster group that does not exist: it matches no cluster.
    ClusterGroup { target: usize, group: String },
    /// `spec.dependsOn[index]` names a bundle that does not exist: the bundle waits for it.
    Dependency { index: usize, bundle: String },
}

impl std::fmt::Display for Unresolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unresolved::ClusterGroup { target, group } => write!(
                f,
                "spec.targets[{target}] names cluster group {group:?}, which does not exist: the target matches no cluster until it is created"
            ),
            Unresolved::Dependency { index, bundle } => write!(
                f,
                "spec.dependsOn[{index}] names bundle {bundle:?}, which does not exist: the bundle is not deployed until it is created and Ready"
            ),
        }
    }
}

impl Fleet {
    /// The first `dependsOn` cycle through one of `candidates` once they replace (or join) the
    /// model's bundles, as bundle names from the candidate back to it (`[a, b, a]`). Cycles among
    /// the model's bundles alone are not reported (they cannot be fixed by this write).
    ///
    /// Cost: the bundles reachable from the candidates; a selector dependency compares the
    /// selector with every bundle's labels, so only bundles that use selectors pay O(bundles).
    pub fn dependency_cycle(&self, candidates: &[CandidateBundle<'_>]) -> Option<Vec<String>> {
        let overlay: HashMap<&str, &CandidateBundle<'_>> =
            candidates.iter().map(|c| (c.name, c)).collect();
        let dependencies_of = |name: &str| -> Option<&[Dependency]> {
            match overlay.get(name) {
                Some(candidate) => Some(candidate.dependencies),
                None => self
                    .bundle_by_name(name)
                    .map(|(_, entry)| entry.dependencies.as_slice()),
            }
        };
        // Where one bundle's dependencies lead: the named bundle, or every other bundle whose
        // labels its selector matches (the candidates' new labels over the model's).
        let successors = |name: &str| -> Vec<String> {
            let mut next = Vec::new();
            for dependency in dependencies_of(name).unwrap_or_default() {
                match dependency {
                    Dependency::Name(target) => {
                        if dependencies_of(target).is_some() {
                            next.push(target.clone());
                        }
                    }
                    Dependency::Selector(selector) => {
                        for other in self.bundle_names.keys() {
                            if other.as_str() != name
                                && !overlay.contains_key(other.as_str())
                                && let Some((_, entry)) = self.bundle_by_name(other)
                                && selector.matches_map(&entry.metadata.labels)
                            {
                                next.push(other.clone());
                            }
                        }
                        for candidate in candidates {
                            if candidate.name != name && selector.matches_map(candidate.labels) {
                                next.push(candidate.name.to_string());
                            }
                        }
                    }
                }
            }
            next
        };
        for candidate in candidates {
            // Breadth-first from the candidate's dependencies back to the candidate; `parent`
            // records the way so the cycle can be named.
            let mut parent: HashMap<String, String> = HashMap::new();
            let mut queue: VecDeque<String> = VecDeque::new();
            for next in successors(candidate.name) {
                if !parent.contains_key(&next) {
                    parent.insert(next.clone(), candidate.name.to_string());
                    queue.push_back(next);
                }
            }
            while let Some(at) = queue.pop_front() {
                if at == candidate.name {
                    let mut cycle = vec![candidate.name.to_string()];
                    let mut step = parent.get(candidate.name).cloned();
                    while let Some(previous) = step {
                        if previous == candidate.name {
                            break;
                        }
                        cycle.push(previous.clone());
                        step = parent.get(&previous).cloned();
                    }
                    cycle.push(candidate.name.to_string());
                    cycle.reverse();
                    return Some(cycle);
                }
                for next in successors(&at) {
                    if !parent.contains_key(&next) {
                        parent.insert(next.clone(), at.clone());
                        queue.push_back(next);
                    }
                }
            }
        }
        None
    }

    /// Whether a target names a cluster group that does not exist (what makes a bundle Error);
    /// no allocation, for list filters.
    pub fn names_missing_group(&self, entry: &BundleEntry) -> bool {
        entry
            .spec
            .targets
            .iter()
            .flat_map(|target| target.cluster_group.iter().chain(&target.cluster_groups))
            .any(|group| !self.groups.contains_key(group))
    }

    /// The references in a bundle's spec that name nothing: missing cluster groups and missing
    /// bundles in `dependsOn`. O(targets + dependencies) hash lookups.
    pub fn unresolved_references(&self, entry: &BundleEntry) -> Vec<Unresolved> {
        unresolved_in(
            &entry.spec,
            |group| self.groups.contains_key(group),
            |bundle| self.bundle_names.contains_key(bundle),
        )
    }
}

fn unresolved_in(
    spec: &BundleSpec,
    group_exists: impl Fn(&str) -> bool,
    bundle_exists: impl Fn(&str) -> bool,
) -> Vec<Unresolved> {
    let mut unresolved = Vec::new();
    for (index, target) in spec.targets.iter().enumerate() {
        for group in target.cluster_group.iter().chain(&target.cluster_groups) {
            if !group_exists(group) {
                unresolved.push(Unresolved::ClusterGroup {
                    target: index,
                    group: group.clone(),
                });
            }
        }
    }
    for (index, dependency) in spec.depends_on.iter().enumerate() {
        if let Some(name) = dependency.name.as_deref()
            && !bundle_exists(name)
        {
            unresolved.push(Unresolved::Dependency {
                index,
                bundle: name.to_string(),
            });
        }
    }
    unresolved
}
