//! Bundle content by digest, held exactly while some bundle references it.
//!
//! Every bundle entry references its digests (the spec's, its targets' own, and its live
//! revision's) once per occurrence; `Fleet::upsert_bundle` takes the new entry's references
//! before it drops the old one's, and `Fleet::remove_bundle` drops them. Content whose last
//! reference goes is released at once, so an admin write costs O(the digests it changes), never
//! a walk over every bundle. Content put before the bundle that references it is applied (a
//! write puts its content, then applies the bundle) is "staged"; `release_unreferenced` drops
//! staged content nothing took up, in O(staged).

use std::collections::HashMap;

use axum::body::Bytes;

#[derive(Debug, Default)]
pub struct Contents {
    /// Content held, by digest (`Bytes`: served without a copy).
    bodies: HashMap<String, Bytes>,
    /// References by digest; a digest is here while referenced, held or not (a followed bundle
    /// may reference content not read yet).
    refs: HashMap<String, u32>,
    /// Digests put while unreferenced: released by `release_unreferenced` unless referenced by
    /// then.
    staged: Vec<String>,
    /// Total bytes held.
    bytes: u64,
}

impl Contents {
    pub fn get(&self, digest: &str) -> Option<&Bytes> {
        self.bodies.get(digest)
    }

    pub fn contains_key(&self, digest: &str) -> bool {
        self.bodies.contains_key(digest)
    }

    /// Holds `body` under `digest` unless already held.
    pub fn insert(&mut self, digest: String, body: Bytes) {
        if self.bodies.contains_key(&digest) {
            return;
        }
        if !self.refs.contains_key(&digest) {
            self.staged.push(digest.clone());
        }
        self.bytes += body.len() as u64;
        self.bodies.insert(digest, body);
    }

    /// `insert` in the shape of a map entry (`contents.entry(digest).or_insert(body)`).
    pub fn entry(&mut self, digest: String) -> ContentEntry<'_> {
        ContentEntry {
            contents: self,
            digest,
        }
    }

    /// Content held.
    pub fn len(&self) -> usize {
        self.bodies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bodies.is_empty()
    }

    /// Bytes of content held.
    pub fn total_bytes(&self) -> u64 {
        self.bytes
    }

    pub fn values(&self) -> impl Iterator<Item = &Bytes> {
        self.bodies.values()
    }

    /// Whether some bundle references `digest`.
    pub fn is_referenced(&self, digest: &str) -> bool {
        self.refs.contains_key(digest)
    }

    /// Every referenced digest.
    pub fn referenced(&self) -> impl Iterator<Item = &str> {
        self.refs.keys().map(String::as_str)
    }

    /// References held to `digest`.
    pub fn references(&self, digest: &str) -> u32 {
        self.refs.get(digest).copied().unwrap_or(0)
    }

    pub(super) fn reference(&mut self, digest: &str) {
        match self.refs.get_mut(digest) {
            Some(count) => *count += 1,
            None => {
                self.refs.insert(digest.to_string(), 1);
            }
        }
    }

    /// Drops one reference; the last one releases the content.
    pub(super) fn unreference(&mut self, digest: &str) {
        let Some(count) = self.refs.get_mut(digest) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            self.refs.remove(digest);
            self.drop_body(digest);
        }
    }

    /// Releases staged content no bundle took up. O(staged), not O(contents).
    pub fn release_unreferenced(&mut self) {
        for digest in std::mem::take(&mut self.staged) {
            if !self.refs.contains_key(&digest) {
                self.drop_body(&digest);
            }
        }
    }

    fn drop_body(&mut self, digest: &str) {
        if let Some(body) = self.bodies.remove(digest) {
            self.bytes -= body.len() as u64;
        }
    }
}

/// See [`Contents::entry`].
pub struct ContentEntry<'a> {
    contents: &'a mut Contents,
    digest: String,
}

impl ContentEntry<'_> {
    pub fn or_insert(self, body: Bytes) {
        self.contents.insert(self.digest, body);
    }

    pub fn or_insert_with(self, body: impl FnOnce() -> Bytes) {
        if !self.contents.contains_key(&self.digest) {
            self.contents.insert(self.digest, body());
        }
    }
}
