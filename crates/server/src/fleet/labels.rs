//! Interned label strings and the inverted label index (roaring bitmaps of cluster ordinals),
//! which evaluates selectors without scanning the fleet.

use std::{collections::HashMap, sync::Arc};

use flotilla_core::selector::{Operator, Selector};
use roaring::RoaringBitmap;

/// Interns label keys and values as dense `u32` ids, counting references: every `intern` is one
/// reference, every `release` gives one back, and a string no label uses any more is freed and
/// its id reused. So deleting or relabelling clusters returns the memory their label strings
/// held (`flotilla_model_interned_strings` goes down with them).
#[derive(Debug, Default)]
pub struct Interner {
    ids: HashMap<Arc<str>, u32>,
    /// By id: the string and how many references hold it; `None` for a freed id.
    strings: Vec<Option<(Arc<str>, u32)>>,
    /// Freed ids, reused before the table grows.
    free: Vec<u32>,
}

impl Interner {
    /// The id of `text`, taking one reference to it.
    pub fn intern(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.ids.get(text) {
            if let Some((_, refs)) = self.strings.get_mut(id as usize).and_then(Option::as_mut) {
                *refs += 1;
            }
            return id;
        }
        let text: Arc<str> = text.into();
        let id = match self.free.pop() {
            Some(id) => {
                self.strings[id as usize] = Some((text.clone(), 1));
                id
            }
            None => {
                self.strings.push(Some((text.clone(), 1)));
                (self.strings.len() - 1) as u32
            }
        };
        self.ids.insert(text, id);
        id
    }

    /// Gives back one reference taken by `intern`; the last one frees the string.
    pub fn release(&mut self, id: u32) {
        let Some(slot) = self.strings.get_mut(id as usize) else {
            return;
        };
        let Some((text, refs)) = slot.as_mut() else {
            return;
        };
        *refs = refs.saturating_sub(1);
        if *refs == 0 {
            self.ids.remove(&**text);
            *slot = None;
            self.free.push(id);
        }
    }

    pub fn get(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    pub fn resolve(&self, id: u32) -> &str {
        self.strings
            .get(id as usize)
            .and_then(Option::as_ref)
            .map_or("", |(text, _)| &**text)
    }

    /// Distinct strings held (some label uses each).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// References held to `text` (tests check the counting).
    pub fn references(&self, text: &str) -> u32 {
        self.get(text)
            .and_then(|id| self.strings.get(id as usize))
            .and_then(Option::as_ref)
            .map_or(0, |(_, refs)| *refs)
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
    fn an_interned_string_is_freed_with_its_last_reference_and_its_id_reused() {
        let mut interner = Interner::default();
        let env = interner.intern("env");
        assert_eq!(interner.intern("env"), env);
        let prod = interner.intern("prod");
        assert_eq!((interner.len(), interner.references("env")), (2, 2));
        interner.release(env);
        assert_eq!(interner.resolve(env), "env", "one reference still holds it");
        interner.release(env);
        assert_eq!(interner.get("env"), None);
        assert_eq!(interner.len(), 1);
        let dev = interner.intern("dev");
        assert_eq!(dev, env, "the freed id is reused");
        assert_eq!(interner.resolve(dev), "dev");
        assert_eq!(interner.resolve(prod), "prod");
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
