//! Validation of object names and durations, with messages that say what to fix.

/// Checks a DNS-1123 label (cluster and token names): 1–63 characters, lower-case letters, digits
/// and `-`, starting and ending with a letter or digit.
pub fn validate_dns_label(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name is missing: set metadata.name".into());
    }
    if name.len() > 63 {
        return Err(format!(
            "name {name:?} is {} characters long; use at most 63",
            name.len()
        ));
    }
    check_dns_characters(name, false)
}

/// Checks a DNS-1123 subdomain (bundle and group names): up to 253 characters of lower-case
/// letters, digits, `-` and `.`, starting and ending with a letter or digit.
pub fn validate_dns_subdomain(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name is missing: set metadata.name".into());
    }
    if name.len() > 253 {
        return Err(format!(
            "name {name:?} is {} characters long; use at most 253",
            name.len()
        ));
    }
    check_dns_characters(name, true)
}

fn check_dns_characters(name: &str, dots: bool) -> Result<(), String> {
    let allowed =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (dots && c == '.');
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !name.chars().all(allowed) || !edge(name.chars().next()) || !edge(name.chars().last()) {
        let what = if dots {
            "lower-case letters, digits, '-' and '.'"
        } else {
            "lower-case letters, digits and '-'"
        };
        return Err(format!(
            "invalid name {name:?}: use {what}, starting and ending with a letter or digit (e.g. \"store-0042\")"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels_reject_dots_capitals_and_edges() {
        assert!(validate_dns_label("store-0042").is_ok());
        assert!(validate_dns_label("a").is_ok());
        for bad in ["", "Store", "a.b", "-a", "a-", "a_b", &"a".repeat(64)] {
            assert!(validate_dns_label(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn subdomains_allow_dots() {
        assert!(validate_dns_subdomain("web.prod-1").is_ok());
        assert!(validate_dns_subdomain(".web").is_err());
        assert!(validate_dns_subdomain(&"a".repeat(254)).is_err());
    }
}
