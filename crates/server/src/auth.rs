//! Secrets: generation, hashing and constant-time checks. Only SHA-256 hashes of secrets are
//! stored; secrets are 256-bit random, so a fast hash is enough (no password stretching needed).

use rand::RngExt;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A fresh 256-bit secret as 64 hex characters.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}

pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

pub fn secret_matches(secret: &str, hash: &[u8; 32]) -> bool {
    hash_secret(secret).ct_eq(hash).into()
}

/// Splits `<name>.<secret>` credentials and tokens; names never contain dots.
pub fn split_credential(credential: &str) -> Option<(&str, &str)> {
    let (name, secret) = credential.split_once('.')?;
    (!name.is_empty() && !secret.is_empty()).then_some((name, secret))
}

/// The bearer token of an `Authorization` header value.
pub fn bearer(header: Option<&axum::http::HeaderValue>) -> Option<&str> {
    header?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_matching_secret_passes() {
        let secret = new_secret();
        let hash = hash_secret(&secret);
        assert!(secret_matches(&secret, &hash));
        assert!(!secret_matches(&new_secret(), &hash));
        assert_eq!(secret.len(), 64);
    }

    #[test]
    fn credentials_split_at_the_first_dot() {
        assert_eq!(split_credential("store-1.abc"), Some(("store-1", "abc")));
        assert_eq!(split_credential("store-1"), None);
        assert_eq!(split_credential(".abc"), None);
        assert_eq!(split_credential("a."), None);
    }
}
