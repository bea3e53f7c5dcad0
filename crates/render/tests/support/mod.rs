//! Fixtures for the rendering tests: checkouts built file by file in temporary directories.

#![allow(dead_code)]

use std::path::Path;

use serde_json::Value;

/// A checkout in a temporary directory.
pub struct Checkout {
    dir: tempfile::TempDir,
}

impl Checkout {
    pub fn new() -> Checkout {
        Checkout {
            dir: tempfile::tempdir().expect("create a temporary directory"),
        }
    }

    /// Writes `text` to `relative`, creating folders as needed.
    pub fn write(&self, relative: &str, text: &str) -> &Checkout {
        let path = self.dir.path().join(relative);
        std::fs::create_dir_all(path.parent().expect("a file has a parent"))
            .expect("create folders");
        std::fs::write(&path, text).expect("write a fixture file");
        self
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

/// `Kind/namespace/name` of each manifest, in order (`-` for no namespace).
pub fn ids(resources: &[Value]) -> Vec<String> {
    resources
        .iter()
        .map(|value| {
            let text = |pointer: &str| value.pointer(pointer).and_then(Value::as_str);
            format!(
                "{}/{}/{}",
                text("/kind").unwrap_or("?"),
                text("/metadata/namespace").unwrap_or("-"),
                text("/metadata/name").unwrap_or("?")
            )
        })
        .collect()
}

/// The manifest called `name` of kind `kind`.
pub fn find<'a>(resources: &'a [Value], kind: &str, name: &str) -> &'a Value {
    resources
        .iter()
        .find(|value| value["kind"] == kind && value["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in {:?}", ids(resources)))
}

pub fn configmap(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: value\n")
}

/// A real helm for the tests that need one: the test fails (never skips) without it.
pub fn helm() -> std::path::PathBuf {
    flotilla_testkit::helm_binary()
        .unwrap_or_else(|error| panic!("this test needs a real helm: {error:#}"))
}

/// The kubectl the tests use: the testkit's pinned one (with its built-in kustomize), downloaded
/// on first use. The test fails (never skips) without it.
pub fn kubectl() -> std::path::PathBuf {
    flotilla_testkit::kubectl_binary()
        .unwrap_or_else(|error| panic!("this test needs a real kubectl: {error:#}"))
}

/// The kustomize engine the tests use: [`kubectl`]'s built-in kustomize. Fails without it.
pub fn kustomize_argv() -> Vec<String> {
    vec![
        kubectl().to_string_lossy().into_owned(),
        "kustomize".to_string(),
    ]
}
