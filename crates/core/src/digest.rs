//! Content digests, deployment ids and etags: the hashes that let agents and the server agree
//! on "what is deployed" without sending it.
//!
//! Content digests are SHA-256 (content is addressed and authorized by digest, so it must be
//! collision-resistant). Deployment ids, etags and report digests are XXH3 (fast, stable across
//! processes and versions; a collision only costs a missed refresh, never a wrong deployment,
//! because content is fetched and verified by SHA-256).

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

use flotilla_api::agent::DeployOptions;

/// Canonical bytes of a manifest list: JSON with object keys sorted (serde_json's default map is
/// ordered), no whitespace. The digest is computed over exactly these bytes.
pub fn canonical_content(manifests: &[Value]) -> Vec<u8> {
    serde_json::to_vec(manifests).unwrap_or_default()
}

/// `sha256:<hex>` of `bytes`.
pub fn content_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Whether `bytes` hash to `digest` (agents check every fetched content).
pub fn verify_content(digest: &str, bytes: &[u8]) -> bool {
    content_digest(bytes) == digest
}

/// A 64-bit hash of any serializable value, stable across processes.
pub fn stable_hash<T: Serialize + ?Sized>(value: &T) -> u64 {
    match serde_json::to_vec(value) {
        Ok(bytes) => xxh3_64(&bytes),
        Err(_) => 0,
    }
}

/// The hash of a cluster's deploy options for a bundle (an input of [`deployment_id`]).
pub fn options_hash(options: &DeployOptions) -> u64 {
    stable_hash(options)
}

/// The id of one deployment of a bundle on one cluster: its content digest plus its options
/// (given as their [`options_hash`]).
pub fn deployment_id(digest: &str, options_hash: u64) -> String {
    hash_text(deployment_hash(digest, options_hash))
}

/// Whether `id` is the [`deployment_id`] of `digest` and `options_hash`, without formatting one
/// (the server checks every report it takes in).
pub fn is_deployment_id(id: &str, digest: &str, options_hash: u64) -> bool {
    id.len() == 16
        && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && u64::from_str_radix(id, 16) == Ok(deployment_hash(digest, options_hash))
}

/// [`deployment_id`] as a number (the id is its hex form).
pub fn deployment_hash(digest: &str, options_hash: u64) -> u64 {
    let mut hasher = Xxh3::new();
    hasher.update(digest.as_bytes());
    hasher.update(&[0]);
    hasher.update(&options_hash.to_le_bytes());
    hasher.digest()
}

/// Etag of a desired set given as `(bundle name, deployment hash)` pairs in name order. Built
/// without allocating: it runs on every sync.
pub fn desired_etag<'a>(entries: impl IntoIterator<Item = (&'a str, u64)>) -> String {
    let mut hasher = Xxh3::new();
    let mut count = 0u32;
    for (name, deployment) in entries {
        hasher.update(name.as_bytes());
        hasher.update(&[0]);
        hasher.update(&deployment.to_le_bytes());
        count += 1;
    }
    hasher.update(&count.to_le_bytes());
    hash_text(hasher.digest())
}

/// Formats a 64-bit hash the way the wire carries it.
pub fn hash_text(hash: u64) -> String {
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn deployment_id_check_agrees_with_the_formatted_id() {
        let id = super::deployment_id("sha256:abc", 7);
        assert!(super::is_deployment_id(&id, "sha256:abc", 7));
        assert!(!super::is_deployment_id(&id, "sha256:abd", 7));
        assert!(!super::is_deployment_id(&id, "sha256:abc", 8));
        assert!(!super::is_deployment_id(
            &id.to_uppercase(),
            "sha256:abc",
            7
        ));
        let signed = format!("+{}", &id[1..]);
        assert!(!super::is_deployment_id(&signed, "sha256:abc", 7));
        assert!(!super::is_deployment_id("", "sha256:abc", 7));
    }

    use super::*;

    #[test]
    fn content_digest_is_independent_of_key_order() {
        let a: Value = serde_json::from_str(r#"[{"kind":"A","apiVersion":"v1"}]"#).unwrap();
        let b: Value = serde_json::from_str(r#"[{"apiVersion":"v1","kind":"A"}]"#).unwrap();
        let a = canonical_content(a.as_array().unwrap());
        let b = canonical_content(b.as_array().unwrap());
        assert_eq!(content_digest(&a), content_digest(&b));
        assert!(verify_content(&content_digest(&a), &b));
        assert!(!verify_content(&content_digest(&a), b"[]"));
    }

    #[test]
    fn deployment_id_changes_with_options() {
        let plain = DeployOptions::default();
        let namespaced = DeployOptions {
            namespace: Some("web".into()),
            ..DeployOptions::default()
        };
        let (plain, namespaced) = (options_hash(&plain), options_hash(&namespaced));
        assert_ne!(
            deployment_id("sha256:a", plain),
            deployment_id("sha256:a", namespaced)
        );
        assert_ne!(
            deployment_id("sha256:a", plain),
            deployment_id("sha256:b", plain)
        );
        assert_eq!(
            deployment_id("sha256:a", plain),
            deployment_id("sha256:a", plain)
        );
    }

    #[test]
    fn etag_distinguishes_entry_boundaries() {
        assert_ne!(desired_etag([("ab", 1)]), desired_etag([("a", 1)]));
        assert_ne!(desired_etag([]), desired_etag([("a", 1)]));
        assert_ne!(desired_etag([("a", 1)]), desired_etag([("a", 2)]));
    }
}
