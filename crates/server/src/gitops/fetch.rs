//! Fetching with the real `git` CLI: resolve the wanted ref with `ls-remote` (cheap: one round
//! trip, no objects), fetch only that commit shallowly into a cache repository per URL and
//! credentials, and check it out in that repository's work tree for rendering.
//!
//! Credentials never appear on a command line (other users can read those from /proc): HTTP
//! credentials travel as an `http.extraHeader` in `GIT_CONFIG_*` environment variables, SSH keys
//! as 0600 files named by `GIT_SSH_COMMAND`.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::Duration,
};

use base64::Engine;
use sha2::{Digest, Sha256};
use tokio::process::Command;

/// Longest a single git command may run.
const GIT_TIMEOUT: Duration = Duration::from_secs(180);

/// Credentials from a `Secret`.
#[derive(Debug, Clone)]
pub enum Credentials {
    Basic {
        username: String,
        password: String,
    },
    Ssh {
        private_key: String,
        known_hosts: String,
    },
}

/// What to deploy: a branch head, or a tag or commit.
#[derive(Debug, Clone)]
pub enum Wanted {
    Branch(String),
    Revision(String),
}

impl Wanted {
    pub fn describe(&self) -> String {
        match self {
            Wanted::Branch(branch) => format!("branch {branch:?}"),
            Wanted::Revision(revision) => format!("revision {revision:?}"),
        }
    }
}

/// A git invocation with a clean environment: no system or user config, no prompts.
struct Git {
    home: PathBuf,
    env: Vec<(String, String)>,
    /// Keeps the SSH key file alive while commands run.
    _scratch: Option<tempfile::TempDir>,
}

impl Git {
    fn new(cache_root: &Path, credentials: Option<&Credentials>) -> anyhow::Result<Git> {
        let home = cache_root.join("home");
        std::fs::create_dir_all(&home)?;
        let mut env = vec![
            ("GIT_TERMINAL_PROMPT".into(), "0".into()),
            ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
            ("GIT_ASKPASS".into(), "true".into()),
            ("SSH_ASKPASS".into(), "true".into()),
            ("GIT_SSH_VARIANT".into(), "ssh".into()),
            // Only real transports: no remote helpers such as fd:: or ext::.
            (
                "GIT_ALLOW_PROTOCOL".into(),
                "https:http:ssh:git:file".into(),
            ),
        ];
        let mut scratch = None;
        match credentials {
            Some(Credentials::Basic { username, password }) => {
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                env.push(("GIT_CONFIG_COUNT".into(), "1".into()));
                env.push(("GIT_CONFIG_KEY_0".into(), "http.extraHeader".into()));
                env.push((
                    "GIT_CONFIG_VALUE_0".into(),
                    format!("Authorization: Basic {token}"),
                ));
            }
            Some(Credentials::Ssh {
                private_key,
                known_hosts,
            }) => {
                let dir = tempfile::tempdir()?;
                let key = dir.path().join("key");
                write_private(&key, private_key)?;
                let hosts = dir.path().join("known_hosts");
                write_private(&hosts, known_hosts)?;
                env.push(("GIT_SSH_COMMAND".into(), ssh_command(Some(&key), &hosts)));
                scratch = Some(dir);
            }
            None => {
                // No credentials: ssh still never uses the server user's keys or config, and
                // knows no host, so ssh:// URLs need a Secret with known_hosts.
                env.push((
                    "GIT_SSH_COMMAND".into(),
                    ssh_command(None, Path::new("/dev/null")),
                ));
            }
        }
        Ok(Git {
            home,
            env,
            _scratch: scratch,
        })
    }

    /// Runs git and returns its stdout; the error carries git's own message.
    async fn run(&self, dir: Option<&Path>, args: &[&str]) -> anyhow::Result<Vec<u8>> {
        let mut command = Command::new("git");
        if let Some(dir) = dir {
            command.arg("-C").arg(dir);
        }
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let output = match tokio::time::timeout(GIT_TIMEOUT, command.output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::NotFound => {
                anyhow::bail!("git is not installed on the server; install git")
            }
            Ok(Err(error)) => anyhow::bail!("git {}: {error}", args[0]),
            Err(_) => anyhow::bail!(
                "git {} took longer than {}s; is the repository reachable?",
                args[0],
                GIT_TIMEOUT.as_secs()
            ),
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let message = stderr
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with("hint:"))
                .collect::<Vec<_>>()
                .join("; ");
            anyhow::bail!("git {} failed: {}", args[0], redact(&message));
        }
        Ok(output.stdout)
    }
}

/// ssh for git: only the given key, no user config or agent, and host keys checked against
/// `known_hosts` (never trusted on first use: a forged host could serve any commit to the fleet).
fn ssh_command(key: Option<&Path>, known_hosts: &Path) -> String {
    let identity = match key {
        Some(key) => format!("-i '{}' -o IdentitiesOnly=yes", key.display()),
        None => "-o IdentitiesOnly=yes -o IdentityFile=none".into(),
    };
    format!(
        "ssh -F /dev/null {identity} -o IdentityAgent=none -o BatchMode=yes -o UserKnownHostsFile='{}' -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes",
        known_hosts.display()
    )
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    if !contents.is_empty() && !contents.ends_with('\n') {
        file.write_all(b"\n")?;
    }
    Ok(())
}

/// Removes `user:password@` from URLs in git's messages.
fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        let authority_end = tail[..end].find('/').unwrap_or(end);
        match tail[..authority_end].rfind('@') {
            Some(at) => {
                out.push_str("***@");
                rest = &tail[at + 1..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// Cache repositories under `root`, one per URL and credentials: content fetched with one
/// GitRepo's credentials is never served to another GitRepo without them.
pub struct Fetcher {
    root: PathBuf,
    /// One fetch at a time per cache repository (git locks its files; concurrent fetches into
    /// one repository fail).
    locks: parking_lot::Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

impl Fetcher {
    pub fn new(root: PathBuf) -> Fetcher {
        Fetcher {
            root,
            locks: Default::default(),
        }
    }

    fn repo_dir(&self, url: &str, credentials: Option<&Credentials>) -> PathBuf {
        let mut hasher = Sha256::new();
        hasher.update(url.as_bytes());
        match credentials {
            None => {}
            Some(Credentials::Basic { username, password }) => {
                hasher.update(b"\0basic\0");
                hasher.update(username.as_bytes());
                hasher.update(b"\0");
                hasher.update(password.as_bytes());
            }
            Some(Credentials::Ssh { private_key, .. }) => {
                hasher.update(b"\0ssh\0");
                hasher.update(private_key.as_bytes());
            }
        }
        let hash = hex::encode(&hasher.finalize()[..12]);
        self.root.join("repos").join(hash)
    }

    fn lock_for(&self, repo: &Path) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .entry(repo.to_path_buf())
            .or_default()
            .clone()
    }

    /// The commit `wanted` names on the remote, by `git ls-remote` (no objects are fetched).
    pub async fn resolve(
        &self,
        url: &str,
        wanted: &Wanted,
        credentials: Option<&Credentials>,
    ) -> anyhow::Result<String> {
        let git = Git::new(&self.root, credentials)?;
        if let Wanted::Revision(revision) = wanted
            && is_commit_id(revision)
            && revision.len() == 40
        {
            return Ok(revision.to_ascii_lowercase());
        }
        let patterns: Vec<String> = match wanted {
            Wanted::Branch(branch) => vec![format!("refs/heads/{branch}")],
            Wanted::Revision(revision) => vec![
                format!("refs/tags/{revision}"),
                format!("refs/tags/{revision}^{{}}"),
                format!("refs/heads/{revision}"),
            ],
        };
        let mut args = vec!["ls-remote", "--", url];
        args.extend(patterns.iter().map(String::as_str));
        let listing = git.run(None, &args).await?;
        let listing = String::from_utf8_lossy(&listing);
        let refs: Vec<(&str, &str)> = listing
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .collect();
        let find = |name: &str| {
            refs.iter()
                .find(|(_, r)| *r == name)
                .map(|(sha, _)| sha.to_string())
        };
        let found = match wanted {
            Wanted::Branch(branch) => find(&format!("refs/heads/{branch}")),
            // A peeled annotated tag names the commit; a lightweight tag names it directly.
            Wanted::Revision(revision) => find(&format!("refs/tags/{revision}^{{}}"))
                .or_else(|| find(&format!("refs/tags/{revision}")))
                .or_else(|| find(&format!("refs/heads/{revision}"))),
        };
        match (found, wanted) {
            (Some(sha), _) => Ok(sha),
            (None, Wanted::Revision(revision)) if is_commit_id(revision) => {
                Ok(revision.to_ascii_lowercase())
            }
            (None, wanted) => {
                anyhow::bail!("{} does not exist in {}", wanted.describe(), redact(url))
            }
        }
    }

    /// Fetches `commit` (shallow where the transport allows it) and checks it out in the cache
    /// repository's work tree. Checking out moves only the files that differ from the previous
    /// commit (creating thousands of files is what costs on most disks), and the returned
    /// `Checkout` holds the repository's lock until rendering is done with it.
    pub async fn checkout(
        &self,
        url: &str,
        commit: &str,
        wanted: &Wanted,
        credentials: Option<&Credentials>,
    ) -> anyhow::Result<Checkout> {
        let git = Git::new(&self.root, credentials)?;
        let repo = self.repo_dir(url, credentials);
        let guard = self.lock_for(&repo).lock_owned().await;
        if !repo.join(".git").join("HEAD").exists() {
            let _ = std::fs::remove_dir_all(&repo);
            std::fs::create_dir_all(&repo)?;
            git.run(Some(&repo), &["init", "--quiet"]).await?;
            // Symlinks become plain files holding the link text: a link could point at the
            // server's own files and carry them into a bundle.
            git.run(Some(&repo), &["config", "core.symlinks", "false"])
                .await?;
            git.run(Some(&repo), &["config", "gc.auto", "0"]).await?;
        }
        if git
            .run(
                Some(&repo),
                &["cat-file", "-e", &format!("{commit}^{{commit}}")],
            )
            .await
            .is_err()
        {
            // By commit id first (servers that allow it send just that commit), then by ref
            // (every server allows that), unshallowing when the commit is older than the tip.
            let by_id = git
                .run(
                    Some(&repo),
                    &[
                        "fetch",
                        "--quiet",
                        "--no-tags",
                        "--depth",
                        "1",
                        "--",
                        url,
                        commit,
                    ],
                )
                .await;
            if by_id.is_err() {
                let refspec = match wanted {
                    Wanted::Branch(branch) => format!("refs/heads/{branch}"),
                    Wanted::Revision(revision) if !is_commit_id(revision) => {
                        format!("refs/tags/{revision}")
                    }
                    Wanted::Revision(_) => "+refs/heads/*:refs/remotes/origin/*".into(),
                };
                git.run(
                    Some(&repo),
                    &["fetch", "--quiet", "--no-tags", "--", url, &refspec],
                )
                .await?;
            }
            git.run(
                Some(&repo),
                &["cat-file", "-e", &format!("{commit}^{{commit}}")],
            )
            .await
            .map_err(|_| {
                anyhow::anyhow!("commit {commit} is not in {} after fetching", redact(url))
            })?;
        }
        // A repository is configuration, not data: refuse huge trees before writing them.
        let listing = git
            .run(Some(&repo), &["ls-tree", "-r", "-l", "--full-tree", commit])
            .await?;
        let bytes: u64 = String::from_utf8_lossy(&listing)
            .lines()
            .filter_map(|line| line.split_whitespace().nth(3)?.parse::<u64>().ok())
            .sum();
        anyhow::ensure!(
            bytes <= MAX_CHECKOUT_BYTES,
            "the commit holds {} MiB of files, more than {} MiB; deploy from a smaller repository",
            bytes >> 20,
            MAX_CHECKOUT_BYTES >> 20
        );
        git.run(
            Some(&repo),
            &["checkout", "--quiet", "--force", "--detach", commit],
        )
        .await?;
        // Nothing from an earlier commit, or from a renderer, survives into this one.
        git.run(Some(&repo), &["clean", "-ffdxq"]).await?;
        Ok(Checkout {
            path: repo,
            _guard: guard,
        })
    }
}

/// A checked-out commit; the cache repository stays locked while this lives.
pub struct Checkout {
    path: PathBuf,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Checkout {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Largest checkout (the sum of its files' sizes).
const MAX_CHECKOUT_BYTES: u64 = 1 << 30;

/// A full or abbreviated commit id (hex, 7 to 40 characters).
pub fn is_commit_id(text: &str) -> bool {
    (7..=40).contains(&text.len()) && text.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_redacted_from_messages() {
        assert_eq!(
            redact("fatal: unable to access 'https://bob:s3cret@git.example/x.git/': 403"),
            "fatal: unable to access 'https://***@git.example/x.git/': 403"
        );
        assert_eq!(redact("no url here"), "no url here");
        assert_eq!(
            redact("git://host/repo and https://host/a@b"),
            "git://host/repo and https://host/a@b"
        );
    }

    #[test]
    fn commit_ids_are_hex_of_seven_to_forty_characters() {
        assert!(is_commit_id("deadbee"));
        assert!(is_commit_id(&"a".repeat(40)));
        assert!(!is_commit_id("v1.2.3"));
        assert!(!is_commit_id("abc"));
    }
}
