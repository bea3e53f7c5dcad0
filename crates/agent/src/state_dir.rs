//! The agent's state directory: its identity, the last desired set, and content by digest. With
//! these the agent keeps enforcing while the server is unreachable, across restarts too.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::Context;
use flotilla_api::agent::DesiredBundle;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub server: String,
    pub name: String,
    pub client_id: String,
    pub credential: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedDesired {
    pub etag: String,
    pub bundles: Vec<DesiredBundle>,
}

pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn open(root: &Path) -> anyhow::Result<StateDir> {
        fs::create_dir_all(root.join("content"))
            .with_context(|| format!("create state dir {}", root.display()))?;
        Ok(StateDir {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn identity(&self) -> anyhow::Result<Option<Identity>> {
        read_json(&self.root.join("identity.json"))
    }

    pub fn save_identity(&self, identity: &Identity) -> anyhow::Result<()> {
        write_json(&self.root.join("identity.json"), identity, true)
    }

    pub fn desired(&self) -> anyhow::Result<Option<CachedDesired>> {
        read_json(&self.root.join("desired.json"))
    }

    pub fn save_desired(&self, desired: &CachedDesired) -> anyhow::Result<()> {
        write_json(&self.root.join("desired.json"), desired, false)
    }

    fn content_path(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| self.root.join("content").join(format!("{hex}.json")))
    }

    /// Cached content, if present and intact.
    pub fn content(&self, digest: &str) -> Option<Vec<u8>> {
        let bytes = fs::read(self.content_path(digest)?).ok()?;
        flotilla_core::digest::verify_content(digest, &bytes).then_some(bytes)
    }

    pub fn save_content(&self, digest: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let path = self
            .content_path(digest)
            .with_context(|| format!("malformed digest {digest:?}"))?;
        write_atomic(&path, bytes, false)
    }

    /// Removes cached content no desired bundle references any more.
    pub fn prune_content(&self, keep: &[&str]) {
        let Ok(entries) = fs::read_dir(self.root.join("content")) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let digest = format!("sha256:{}", name.trim_end_matches(".json"));
            if !keep.contains(&digest.as_str()) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("decode {}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("read {}", path.display())),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T, secret: bool) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(value)?;
    write_atomic(path, &bytes, secret)
}

/// Writes via a temporary file and a rename, so a crash leaves the old or the new file whole.
pub fn write_atomic(path: &Path, bytes: &[u8], secret: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let temporary = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options
        .open(&temporary)
        .with_context(|| format!("write {}", temporary.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temporary, path).with_context(|| format!("replace {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupted_cached_content_is_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let body = b"[]";
        let digest = flotilla_core::digest::content_digest(body);
        state.save_content(&digest, body).unwrap();
        assert_eq!(state.content(&digest).as_deref(), Some(&body[..]));
        let path = state.content_path(&digest).unwrap();
        fs::write(&path, b"[{}]").unwrap();
        assert_eq!(state.content(&digest), None);
    }

    #[test]
    fn content_paths_reject_traversal() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        assert!(state.content_path("sha256:../../etc/passwd").is_none());
        assert!(state.save_content("../x", b"[]").is_err());
    }
}
