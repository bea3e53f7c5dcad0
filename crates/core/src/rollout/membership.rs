//! Which wave each cluster of a run belongs to, and its place in the wave.
//!
//! A run fixes its share waves once, when it starts: a share wave takes the first `N` of the
//! clusters earlier waves left, in key order, and the run keeps the key of the last one taken
//! (its [`Boundary`]). From then on a cluster's wave is a function of its labels, its key and
//! the boundaries alone, so a restarted server, a late joiner or a relabelled cluster is placed
//! without looking at any other cluster.

use serde::{Deserialize, Serialize};

use super::strategy::{Members, Strategy, rank};

/// A cluster's place in its wave: the `sortBy` label's value (if the wave sorts by one), then
/// its rank in the seeded shuffle. Late joiners of `lastWave` sort after everyone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key {
    /// Set for late joiners placed in the last wave, which go after its original members.
    #[serde(default, skip_serializing_if = "is_false")]
    pub late: bool,
    /// The `sortBy` label's value; clusters without the label sort first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
    pub rank: u64,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// How far a share wave reaches among the clusters earlier waves left, fixed when the run
/// starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Boundary {
    /// Every cluster left (a 100% share, or a share larger than what is left).
    All,
    /// The clusters whose key is at most this one.
    UpTo(Key),
    /// None (nothing was left when the run started).
    Nothing,
}

/// A cluster as membership sees it.
pub struct ClusterLabels<'a, F: Fn(&str) -> Option<&'a str>> {
    pub name: &'a str,
    pub label: F,
}

/// The key a cluster has in `wave` (which must be a share wave to sort by a label).
pub fn key_in(
    strategy: &Strategy,
    wave: usize,
    name: &str,
    label: impl Fn(&str) -> Option<String>,
) -> Key {
    let sort = match strategy.waves.get(wave).map(|w| &w.members) {
        Some(Members::Share {
            sort_by: Some(key), ..
        }) => label(key),
        _ => None,
    };
    Key {
        late: false,
        sort,
        rank: rank(strategy.seed, name),
    }
}

/// The wave a cluster belongs to under fixed boundaries (one per wave; ignored for selector
/// waves), with its key there. `None` when no wave takes it (a strategy whose last wave is a
/// selector, which compiled strategies never have).
pub fn place<'a>(
    strategy: &Strategy,
    boundaries: &[Boundary],
    cluster: &ClusterLabels<'a, impl Fn(&str) -> Option<&'a str>>,
) -> Option<(usize, Key)> {
    for (index, wave) in strategy.waves.iter().enumerate() {
        match &wave.members {
            Members::Selector(selector) => {
                if selector.matches(&cluster.label) {
                    return Some((index, key_in(strategy, index, cluster.name, |_| None)));
                }
            }
            Members::Share { .. } => {
                let key = key_in(strategy, index, cluster.name, |k| {
                    (cluster.label)(k).map(str::to_string)
                });
                let takes = match boundaries.get(index).unwrap_or(&Boundary::All) {
                    Boundary::All => true,
                    Boundary::UpTo(last) => key <= *last,
                    Boundary::Nothing => false,
                };
                if takes {
                    return Some((index, key));
                }
            }
        }
    }
    None
}

/// Fixes the boundaries of a run's share waves over its clusters (each given by name and
/// labels) and places every cluster. O(clusters × waves + clusters log clusters), once per run.
pub fn assign<'a, F: Fn(&str) -> Option<&'a str>>(
    strategy: &Strategy,
    clusters: &[ClusterLabels<'a, F>],
) -> (Vec<Boundary>, Vec<Option<(usize, Key)>>) {
    let mut boundaries = Vec::with_capacity(strategy.waves.len());
    let mut placed: Vec<Option<(usize, Key)>> = vec![None; clusters.len()];
    let mut left: Vec<usize> = (0..clusters.len()).collect();
    for (index, wave) in strategy.waves.iter().enumerate() {
        match &wave.members {
            Members::Selector(selector) => {
                boundaries.push(Boundary::All);
                left.retain(|&c| {
                    let cluster = &clusters[c];
                    if selector.matches(&cluster.label) {
                        placed[c] = Some((index, key_in(strategy, index, cluster.name, |_| None)));
                        false
                    } else {
                        true
                    }
                });
            }
            Members::Share { amount, .. } => {
                let take = amount.of_rounded_up(left.len() as u64) as usize;
                let mut keyed: Vec<(Key, usize)> = left
                    .iter()
                    .map(|&c| {
                        let cluster = &clusters[c];
                        let key = key_in(strategy, index, cluster.name, |k| {
                            (cluster.label)(k).map(str::to_string)
                        });
                        (key, c)
                    })
                    .collect();
                keyed.sort_unstable();
                let boundary = if take == 0 {
                    Boundary::Nothing
                } else if take >= keyed.len() {
                    Boundary::All
                } else {
                    Boundary::UpTo(keyed[take - 1].0.clone())
                };
                boundaries.push(boundary);
                let taken = take.min(keyed.len());
                let rest: Vec<usize> = keyed[taken..].iter().map(|(_, c)| *c).collect();
                for (key, c) in keyed.into_iter().take(taken) {
                    placed[c] = Some((index, key));
                }
                left = rest;
            }
        }
    }
    (boundaries, placed)
}
