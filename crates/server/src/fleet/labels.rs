//! Interned label strings and the inverted label index (roaring bitmaps of cluster ordinals),
//! which evaluates selectors without scanning the fleet.

use std::collections::HashMap;

use flotilla_core::selector::{Operator, Selector};
use roaring::RoaringBitmap;

/// Interns label keys and values as dense `u32` ids. Strings are never freed: the set of distinct
/// label strings in a fleet is small next to the number of clusters carrying them.
#[derive(Debug, Default)]
pub struct Interner {
    ids: HashMap<Box<str>, u32>,
    strings: Vec<Box<str>>,
}

impl Interner {
    pub fn intern(&mut self, text: &str) -> u32 {
        if let Some(id) = self.ids.get(text) {
            return *id;
        }
        let id = self.strings.len() as u32;
        self.strings.push(text.into());
        self.ids.insert(text.into(), id);
        id
    }

    pub fn get(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    pub fn resolve(&self, id: u32) -> &str {
        self.strings.get(id as usize).map(|s| &**s).unwrap_or("")
    }

    /// Distinct strings interned (never shrinks).
    pub fn len(&self) -> usize {
        self.strings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }
}

/// A cluster's labels: `(key id, value id)` pairs sorted by key id.
pub type Labels = Box<[(u32, u32)]>;

/// Inverted index from label pairs and keys to the clusters carrying them.
#[derive(Debug, Default)]
pub struct LabelIndex {
    by_pair: HashMap<(u32, u32), RoaringBitmap>,
    by_key: HashMap<u32, RoaringBitmap>,
}

impl LabelIndex {
    pub fn insert(&mut self, ordinal: u32, labels: &[(u32, u32)]) {
        for &(key, value) in labels {
            self.by_pair
                .entry((key, value))
                .or_default()
                .insert(ordinal);
            self.by_key.entry(key).or_default().insert(ordinal);
        }
    }

    pub fn remove(&mut self, ordinal: u32, labels: &[(u32, u32)]) {
        for &(key, value) in labels {
            if let Some(bitmap) = self.by_pair.get_mut(&(key, value)) {
                bitmap.remove(ordinal);
                if bitmap.is_empty() {
                    self.by_pair.remove(&(key, value));
                }
            }
            if let Some(bitmap) = self.by_key.get_mut(&key) {
                bitmap.remove(ordinal);
                if bitmap.is_empty() {
                    self.by_key.remove(&key);
                }
            }
        }
    }

    /// The clusters (out of `all`) matching `selector`, by bitmap algebra over the index.
    pub fn select(
        &self,
        selector: &Selector,
        interner: &Interner,
        all: &RoaringBitmap,
    ) -> RoaringBitmap {
        let mut result = all.clone();
        for requirement in selector.requirements() {
            let key = interner.get(&requirement.key);
            let with_values = || {
                let mut union = RoaringBitmap::new();
                if let Some(key) = key {
                    for value in &requirement.values {
                        if let Some(value) = interner.get(value)
                            && let Some(bitmap) = self.by_pair.get(&(key, value))
                        {
                            union |= bitmap;
                        }
                    }
                }
                union
            };
            let with_key = || {
                key.and_then(|key| self.by_key.get(&key))
                    .cloned()
                    .unwrap_or_default()
            };
            match requirement.operator {
                Operator::In => result &= with_values(),
                Operator::NotIn => result -= with_values(),
                Operator::Exists => result &= with_key(),
                Operator::DoesNotExist => result -= with_key(),
            }
            if result.is_empty() {
                break;
            }
        }
        result
    }
}

/// Looks up a label value of a cluster by key.
pub fn label_value<'a>(
    labels: &[(u32, u32)],
    interner: &'a Interner,
    key: &str,
) -> Option<&'a str> {
    let key = interner.get(key)?;
    labels
        .binary_search_by_key(&key, |(k, _)| *k)
        .ok()
        .map(|index| interner.resolve(labels[index].1))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn intern(interner: &mut Interner, pairs: &[(&str, &str)]) -> Labels {
        let mut labels: Vec<(u32, u32)> = pairs
            .iter()
            .map(|(k, v)| (interner.intern(k), interner.intern(v)))
            .collect();
        labels.sort_unstable();
        labels.into()
    }

    #[test]
    fn index_selection_agrees_with_selector_matching() {
        let mut interner = Interner::default();
        let mut index = LabelIndex::default();
        let clusters: Vec<Vec<(&str, &str)>> = vec![
            vec![("env", "prod"), ("tier", "a")],
            vec![("env", "prod"), ("tier", "b"), ("canary", "true")],
            vec![("env", "dev")],
            vec![],
        ];
        let mut all = RoaringBitmap::new();
        for (ordinal, pairs) in clusters.iter().enumerate() {
            let labels = intern(&mut interner, pairs);
            index.insert(ordinal as u32, &labels);
            all.insert(ordinal as u32);
        }
        for text in [
            "env=prod",
            "env!=prod",
            "tier in (a,b)",
            "tier notin (a)",
            "canary",
            "!canary",
            "env=prod,!canary",
            "missing=x",
            "",
        ] {
            let selector = Selector::parse(text).unwrap();
            let selected: Vec<u32> = index.select(&selector, &interner, &all).iter().collect();
            let expected: Vec<u32> = clusters
                .iter()
                .enumerate()
                .filter(|(_, pairs)| {
                    let map: BTreeMap<String, String> = pairs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    selector.matches_map(&map)
                })
                .map(|(ordinal, _)| ordinal as u32)
                .collect();
            assert_eq!(selected, expected, "selector {text:?}");
        }
    }

    #[test]
    fn removed_cluster_leaves_the_index() {
        let mut interner = Interner::default();
        let mut index = LabelIndex::default();
        let labels = intern(&mut interner, &[("env", "prod")]);
        index.insert(7, &labels);
        index.remove(7, &labels);
        let all: RoaringBitmap = [7].into_iter().collect();
        let selector = Selector::parse("env").unwrap();
        assert!(index.select(&selector, &interner, &all).is_empty());
        assert_eq!(label_value(&labels, &interner, "env"), Some("prod"));
    }
}
