//! `flotilla history bundle NAME` against a real server: each content change of a bundle is a
//! revision, listed newest first, and the live one is marked Stable.

mod support;

use serde_json::Value;
use support::{ServerProcess, config_map_bundle};

#[test]
fn history_lists_a_bundles_revisions_newest_first_with_the_live_one_stable() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    server.apply(&config_map_bundle("web", &["a"], "env=prod", ""));
    server.apply(&config_map_bundle("web", &["a", "b"], "env=prod", ""));

    let printed = server.ok(&["history", "bundle", "web"]);
    let rows: Vec<Vec<&str>> = printed
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "REVISION",
            "GENERATION",
            "DIGEST",
            "COMMIT",
            "AUTHOR",
            "CREATED",
            "PHASE"
        ],
        "{printed}"
    );
    let numbers: Vec<&str> = rows[1..].iter().map(|row| row[0]).collect();
    assert_eq!(numbers, ["2", "1"], "newest first:\n{printed}");
    assert_eq!(rows[1].last(), Some(&"Stable"), "{printed}");
    assert_ne!(rows[2].last(), Some(&"Stable"), "{printed}");

    let json: Value =
        serde_json::from_str(&server.ok(&["history", "bundles", "web", "-o", "json"]))
            .expect("JSON list");
    let items = json["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["revision"], 2);
    assert_eq!(items[0]["generation"], 2);
    assert!(
        items[0]["digest"]
            .as_str()
            .is_some_and(|digest| rows[1][2].len() == 12
                && digest.trim_start_matches("sha256:").starts_with(rows[1][2])),
        "the table's digest is the document's, cut: {json}"
    );
    assert_ne!(items[0]["digest"], items[1]["digest"]);

    let missing = server.cli(&["history", "bundle", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("read the revisions of bundle/nope") && stderr.contains("(404)"),
        "{stderr}"
    );
}
