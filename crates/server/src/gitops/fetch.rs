//! Fetching with the real `git` CLI: resolve the wanted ref with `ls-remote` (cheap: one round
//! trip, no objects), fetch only that commit shallowly into a bare cache repository per URL and
//! credentials, and export its files into a scratch folder of their own for rendering.
//!
//! *Invariant: a render sees only its own repository's files.* Cache repositories are bare (no
//! work tree of any repository lies on disk between renders), each render gets a fresh scratch
//! folder deleted when it is done, and a symbolic link is kept only when it resolves inside the
//! scratch folder; any other becomes a link to itself, which resolves to nothing and fails the
//! renders that use it with an error naming it.
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

    /// A git command in `dir` with the clean environment, stdout and stderr piped.
    fn command(&self, dir: Option<&Path>, args: &[&str]) -> Command {
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
        command
    }

    /// Runs git and returns its stdout; the error carries git's own message.
    async fn run(&self, dir: Option<&Path>, args: &[&str]) -> anyhow::Result<Vec<u8>> {
        let mut command = self.command(dir, args);
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
    /// Cache repositories and scratch folders under `root` (made absolute: the engines run in
    /// other working directories). Scratch folders left by a crash are removed, and so are
    /// cache repositories with a work tree (from versions that rendered in the cache itself).
    pub fn new(root: PathBuf) -> Fetcher {
        let root = std::path::absolute(&root).unwrap_or(root);
        let _ = std::fs::remove_dir_all(root.join(SCRATCH));
        if let Ok(entries) = std::fs::read_dir(root.join(REPOS)) {
            for entry in entries.flatten() {
                if entry.path().join(".git").exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
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
        self.root.join(REPOS).join(hash)
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

    /// Fetches `commit` (shallow where the transport allows it) into the cache repository and
    /// exports its files into a fresh scratch folder, which the returned `Checkout` deletes when
    /// dropped.
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
        if !repo.join("HEAD").exists() || repo.join(".git").exists() {
            let _ = std::fs::remove_dir_all(&repo);
            std::fs::create_dir_all(&repo)?;
            // Bare: no repository's files lie on disk except in a render's scratch folder.
            git.run(Some(&repo), &["init", "--quiet", "--bare"]).await?;
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
            .run(
                Some(&repo),
                &["ls-tree", "-r", "-l", "-z", "--full-tree", commit],
            )
            .await?;
        let entries = parse_tree(&listing)?;
        let bytes: u64 = entries.iter().map(|entry| entry.size).sum();
        anyhow::ensure!(
            bytes <= MAX_CHECKOUT_BYTES,
            "the commit holds {} MiB of files, more than {} MiB; deploy from a smaller repository",
            bytes >> 20,
            MAX_CHECKOUT_BYTES >> 20
        );
        anyhow::ensure!(
            entries.len() <= MAX_CHECKOUT_FILES,
            "the commit holds {} files, more than {MAX_CHECKOUT_FILES}; deploy from a smaller \
             repository",
            entries.len()
        );
        let scratch_root = self.root.join(SCRATCH);
        std::fs::create_dir_all(&scratch_root)?;
        let scratch = tempfile::Builder::new()
            .prefix("render-")
            .tempdir_in(&scratch_root)?;
        match tokio::time::timeout(GIT_TIMEOUT, export(&git, &repo, &entries, scratch.path())).await
        {
            Ok(result) => result?,
            Err(_) => anyhow::bail!(
                "exporting the commit took longer than {}s",
                GIT_TIMEOUT.as_secs()
            ),
        }
        drop(guard);
        Ok(Checkout { scratch })
    }
}

/// Cache repositories, under the fetcher's root.
const REPOS: &str = "repos";
/// Scratch folders of renders in progress, under the fetcher's root.
const SCRATCH: &str = "scratch";

/// One file of a commit's tree.
struct TreeEntry {
    mode: TreeMode,
    object: String,
    size: u64,
    /// Relative path, `/`-separated, checked to stay inside the tree.
    path: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TreeMode {
    File,
    Executable,
    Symlink,
}

/// Parses `git ls-tree -r -l -z` output, keeping files and symbolic links (submodules are not
/// part of the commit's files). A path that is absolute or has `.`/`..` components is refused:
/// git never writes one, and neither does the export.
fn parse_tree(listing: &[u8]) -> anyhow::Result<Vec<TreeEntry>> {
    let mut entries = Vec::new();
    for record in listing.split(|&b| b == 0).filter(|r| !r.is_empty()) {
        let tab = record
            .iter()
            .position(|&b| b == b'\t')
            .ok_or_else(|| anyhow::anyhow!("git ls-tree printed a line without a path"))?;
        let (info, path) = (&record[..tab], &record[tab + 1..]);
        let info = String::from_utf8_lossy(info);
        let mut fields = info.split_whitespace();
        let (Some(mode), Some(_kind), Some(object), Some(size)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            anyhow::bail!("git ls-tree printed an unexpected line: {info}");
        };
        let mode = match mode {
            "100644" | "100664" => TreeMode::File,
            "100755" => TreeMode::Executable,
            "120000" => TreeMode::Symlink,
            // Submodules (160000) and anything else: not files of this commit.
            _ => continue,
        };
        let path = tree_path(path)?;
        entries.push(TreeEntry {
            mode,
            object: object.to_string(),
            size: size.parse().unwrap_or(0),
            path,
        });
    }
    Ok(entries)
}

fn tree_path(raw: &[u8]) -> anyhow::Result<PathBuf> {
    let text = String::from_utf8_lossy(raw);
    let valid = !raw.is_empty()
        && raw
            .split(|&b| b == b'/')
            .all(|part| !part.is_empty() && part != b"." && part != b"..");
    anyhow::ensure!(valid, "the commit holds an invalid path {text:?}");
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(raw)))
    }
    #[cfg(not(unix))]
    {
        Ok(PathBuf::from(text.into_owned()))
    }
}

/// Longest symbolic link target kept (PATH_MAX on Linux).
const MAX_LINK_TARGET: u64 = 4096;

/// Writes the blobs of `entries` under `dir` with one `git cat-file --batch`, then the symbolic
/// links that stay inside `dir` (see [`place_links`]).
async fn export(git: &Git, repo: &Path, entries: &[TreeEntry], dir: &Path) -> anyhow::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let mut child = git
        .command(Some(repo), &["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("git cat-file has no stdin"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("git cat-file has no stdout"))?;
    let mut request = String::with_capacity(entries.len() * 41);
    for entry in entries {
        request.push_str(&entry.object);
        request.push('\n');
    }
    // Written from its own task: git answers while it reads, and both pipes are bounded.
    let writer = tokio::spawn(async move {
        let result = stdin.write_all(request.as_bytes()).await;
        drop(stdin);
        result
    });
    let mut reader = tokio::io::BufReader::new(stdout);
    let mut links = Vec::new();
    let mut header = String::new();
    for entry in entries {
        header.clear();
        reader.read_line(&mut header).await?;
        let mut fields = header.split_whitespace();
        let size: u64 = match (fields.next(), fields.next(), fields.next()) {
            (Some(_), Some("blob"), Some(size)) => size.parse()?,
            _ => anyhow::bail!(
                "git cat-file answered {:?} for {}",
                header.trim(),
                entry.path.display()
            ),
        };
        let path = dir.join(&entry.path);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        match entry.mode {
            TreeMode::Symlink => {
                anyhow::ensure!(
                    size <= MAX_LINK_TARGET,
                    "{} is a symbolic link with a target longer than {MAX_LINK_TARGET} bytes",
                    entry.path.display()
                );
                let mut target = Vec::new();
                (&mut reader).take(size).read_to_end(&mut target).await?;
                links.push((entry.path.clone(), target));
            }
            TreeMode::File | TreeMode::Executable => {
                let mut file = tokio::fs::File::create(&path).await?;
                let copied = tokio::io::copy(&mut (&mut reader).take(size), &mut file).await?;
                anyhow::ensure!(copied == size, "git cat-file ended early");
                file.flush().await?;
                #[cfg(unix)]
                if entry.mode == TreeMode::Executable {
                    use std::os::unix::fs::PermissionsExt;
                    tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                        .await?;
                }
            }
        }
        // Each object ends with a newline.
        let mut newline = [0u8; 1];
        reader.read_exact(&mut newline).await?;
    }
    writer.await??;
    let status = child.wait().await?;
    anyhow::ensure!(status.success(), "git cat-file failed: {status}");
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || place_links(&dir, links)).await??;
    Ok(())
}

/// Creates the symbolic links of a commit under `dir`. A link whose target resolves (by the
/// kernel, through any other link) to a path inside `dir` is kept as it is; any other (absolute,
/// leaving `dir`, dangling) is replaced by a link to itself, which resolves to nothing: renders
/// that use it fail naming it, and no render can follow it out of the repository.
fn place_links(dir: &Path, links: Vec<(PathBuf, Vec<u8>)>) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let root = dir.canonicalize()?;
        let mut placed = Vec::new();
        for (path, target) in links {
            let target = PathBuf::from(std::ffi::OsStr::from_bytes(&target));
            let link = dir.join(&path);
            if link.symlink_metadata().is_ok() {
                continue;
            }
            std::os::unix::fs::symlink(&target, &link)?;
            placed.push(link);
        }
        // Removing one link can change where another resolves: repeat until none moves.
        loop {
            let mut changed = false;
            for link in &placed {
                let inside = link
                    .canonicalize()
                    .is_ok_and(|real| real.starts_with(&root));
                let is_self_link = std::fs::read_link(link)
                    .is_ok_and(|target| Some(target.as_os_str()) == link.file_name());
                if !inside && !is_self_link {
                    std::fs::remove_file(link)?;
                    let name = link.file_name().unwrap_or_default();
                    std::os::unix::fs::symlink(name, link)?;
                    changed = true;
                }
            }
            if !changed {
                return Ok(());
            }
        }
    }
    #[cfg(not(unix))]
    {
        // No symbolic links: the renders that need one fail naming the missing file.
        let _ = (dir, links);
        Ok(())
    }
}

/// A commit's files in a scratch folder of their own, deleted when this is dropped.
pub struct Checkout {
    scratch: tempfile::TempDir,
}

impl Checkout {
    pub fn path(&self) -> &Path {
        self.scratch.path()
    }
}

/// Largest checkout (the sum of its files' sizes).
const MAX_CHECKOUT_BYTES: u64 = 1 << 30;
/// Most files in a checkout: every render writes them all into a fresh scratch folder, and
/// configuration repositories hold hundreds to a few thousands.
const MAX_CHECKOUT_FILES: usize = 100_000;

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
    fn tree_paths_that_leave_the_tree_are_refused_and_submodules_skipped() {
        let listing = b"100644 blob aaaa     12\tapps/a.yaml\0\
160000 commit bbbb       -\tvendor/sub\0\
120000 blob cccc      9\tapps/link\0";
        let entries = parse_tree(listing).unwrap();
        let paths: Vec<_> = entries.iter().map(|e| e.path.clone()).collect();
        assert_eq!(
            paths,
            [PathBuf::from("apps/a.yaml"), PathBuf::from("apps/link")]
        );
        assert_eq!(entries[0].size, 12);
        for bad in [&b"../x"[..], b"a/../../x", b"/etc/passwd", b"a//b", b"./a"] {
            let mut line = b"100644 blob aaaa 1\t".to_vec();
            line.extend_from_slice(bad);
            assert!(
                parse_tree(&line).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn only_links_that_resolve_inside_the_export_are_kept() {
        let outer = tempfile::tempdir().unwrap();
        std::fs::write(outer.path().join("secret"), "hunter2").unwrap();
        let dir = outer.path().join("export");
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/file.yaml"), "x: 1").unwrap();
        let links: Vec<(PathBuf, Vec<u8>)> = [
            ("inside", "a/b/file.yaml"),
            ("absolute", "/etc/hostname"),
            ("up", "../secret"),
            // Each lexically inside; through `dot` the kernel climbs out of the export.
            ("dot", "."),
            ("a/through", "../dot/../secret"),
            ("dangling", "a/missing"),
        ]
        .into_iter()
        .map(|(path, target)| (PathBuf::from(path), target.as_bytes().to_vec()))
        .collect();
        place_links(&dir, links).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("inside")).unwrap(), "x: 1");
        for refused in ["absolute", "up", "a/through", "dangling"] {
            let path = dir.join(refused);
            assert!(
                std::fs::symlink_metadata(&path).is_ok(),
                "{refused} stays visible"
            );
            assert!(
                std::fs::read(&path).is_err(),
                "{refused} resolves to nothing"
            );
        }
        // `.` resolves inside (to the export itself) and is kept.
        assert!(dir.join("dot").canonicalize().is_ok());
    }

    #[test]
    fn commit_ids_are_hex_of_seven_to_forty_characters() {
        assert!(is_commit_id("deadbee"));
        assert!(is_commit_id(&"a".repeat(40)));
        assert!(!is_commit_id("v1.2.3"));
        assert!(!is_commit_id("abc"));
    }
}
