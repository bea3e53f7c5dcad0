//! Bundle and Helm release names derived from repository names and folders.

use sha2::{Digest, Sha256};

/// Longest bundle name (a DNS-1123 label).
const BUNDLE_NAME_MAX: usize = 63;
/// Longest Helm release name.
const RELEASE_NAME_MAX: usize = 53;

/// The bundle name for `folder` of the GitRepo `repo`: `<repo>-<folder with / as ->` (just
/// `<repo>` for the root), or `fleet_name` (fleet.yaml's `name`) when set. Either way the name is
/// lower-cased, characters outside `[a-z0-9-]` become `-`, runs of `-` collapse, leading and
/// trailing `-` go, and a name longer than 63 characters is cut and ends with `-` plus 8 hex
/// characters of the SHA-256 of the whole (sanitised) name, so distinct long names stay distinct.
pub fn bundle_name(repo: &str, folder: &str, fleet_name: Option<&str>) -> String {
    if let Some(name) = fleet_name {
        let name = sanitize(name, BUNDLE_NAME_MAX);
        if !name.is_empty() {
            return name;
        }
    }
    let folder = crate::discover::normalize_folder(folder);
    let raw = if folder == "." {
        repo.to_string()
    } else {
        format!("{repo}-{}", folder.replace('/', "-"))
    };
    let name = sanitize(&raw, BUNDLE_NAME_MAX);
    if name.is_empty() {
        "bundle".to_string()
    } else {
        name
    }
}

/// A Helm release name made from `text` by the same rules, at most 53 characters.
pub(crate) fn release_name(text: &str) -> String {
    sanitize(text, RELEASE_NAME_MAX)
}

/// Lower-cases `text`, maps characters outside `[a-z0-9-]` to `-`, collapses and trims dashes,
/// and shortens the result to `max` characters with a hash suffix when it is longer.
fn sanitize(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.len() <= max {
        return out;
    }
    let hash = hex::encode(Sha256::digest(out.as_bytes()));
    // Only ASCII is left, so byte slicing is safe.
    let prefix = out[..max - 9].trim_end_matches('-');
    format!("{prefix}-{}", &hash[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_maps_collapses_and_trims() {
        assert_eq!(sanitize("__My_App..v2__", 63), "my-app-v2");
        assert_eq!(sanitize("---", 63), "");
        assert_eq!(sanitize("Ünïcode", 63), "n-code");
    }

    #[test]
    fn long_names_get_a_hash_suffix_and_stay_within_the_limit() {
        let long = "a".repeat(100);
        let name = sanitize(&long, 63);
        assert_eq!(name.len(), 63);
        assert!(name.starts_with(&"a".repeat(54)), "{name}");
        assert_eq!(&name[54..55], "-");
        let other = sanitize(&format!("{}b", "a".repeat(99)), 63);
        assert_ne!(name, other);
    }
}
