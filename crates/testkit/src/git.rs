//! Real git repositories made with the `git` binary on PATH, isolated from the host's config.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use tempfile::TempDir;

use crate::run_checked;

/// Deadline for one local git command (commit, push to a file path, ls-remote, …).
pub(crate) const GIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Name of the fixture's bare repository inside [`GitRepoFixture::repos_dir`].
const REPO_NAME: &str = "repo.git";

/// The global config every fixture and server uses: a fixed identity and branch name, and no
/// background work (auto gc detaches a process that would outlive its owner).
const GITCONFIG: &str = "\
[user]
\tname = flotilla test
\temail = test@flotilla.invalid
[init]
\tdefaultBranch = main
[gc]
\tauto = 0
[maintenance]
\tauto = false
[commit]
\tgpgSign = false
[tag]
\tgpgSign = false
[advice]
\tdetachedHead = false
";

/// Makes `home` an isolated HOME for git: writes its `.gitconfig`.
pub(crate) fn prepare_git_home(home: &Path) -> Result<()> {
    fs::create_dir_all(home).with_context(|| format!("creating {}", home.display()))?;
    fs::write(home.join(".gitconfig"), GITCONFIG)
        .with_context(|| format!("writing {}/.gitconfig", home.display()))
}

/// `git` from PATH with nothing from the host leaking in: see [`isolate`].
pub(crate) fn git_command(home: &Path) -> Command {
    let mut cmd = Command::new("git");
    isolate(&mut cmd, home);
    cmd
}

/// Gives a git command (or one of git's own programs) an isolated environment: every `GIT_*`
/// variable removed, no system config, HOME (and so the global config) at `home`, no credential
/// prompts, English messages.
pub(crate) fn isolate(cmd: &mut Command, home: &Path) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .env("LANGUAGE", "C")
        .env_remove("SSH_ASKPASS")
        .env_remove("EMAIL");
}

/// One of git's own programs (`git-daemon`, `git-http-backend`) in `git --exec-path`. Servers
/// run these directly: `git daemon` would run `git-daemon` as a child of its own, which
/// killing `git` leaves behind.
pub(crate) fn git_program(name: &str) -> Result<PathBuf> {
    let exec_path = run_git(git_command(Path::new("/nonexistent")).arg("--exec-path"))?;
    let program = Path::new(&exec_path).join(name);
    if !crate::is_executable(&program) {
        anyhow::bail!(
            "{} is missing: install git's {name} (Debian's `git` package ships it in \
             /usr/lib/git-core)",
            program.display()
        );
    }
    Ok(program)
}

/// Runs a prepared git command (a missing git is reported by [`run_checked`]).
pub(crate) fn run_git(cmd: &mut Command) -> Result<String> {
    run_checked(cmd, GIT_TIMEOUT)
}

/// A real git repository: a bare repository (what the servers serve, what clients fetch) and a
/// work tree whose commits are pushed to it. All under one temporary directory:
///
/// ```text
/// <tmp>/home/           HOME for every git command (.gitconfig only)
/// <tmp>/repos/repo.git  the bare repository; `repos/` is what GitDaemon/GitHttpServer serve
/// <tmp>/work/           the work tree, remote `origin` = the bare repository
/// ```
///
/// The methods panic on failure, with git's stderr in the message.
pub struct GitRepoFixture {
    // Removed on drop; holds everything below.
    _dir: TempDir,
    home: PathBuf,
    repos: PathBuf,
    bare: PathBuf,
    work: PathBuf,
}

impl Default for GitRepoFixture {
    fn default() -> Self {
        Self::new()
    }
}

impl GitRepoFixture {
    /// An empty bare repository (no commits yet) and its work tree, on branch `main`.
    pub fn new() -> Self {
        Self::try_new().unwrap_or_else(|e| panic!("GitRepoFixture::new: {e:#}"))
    }

    fn try_new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("flotilla-git-")
            .tempdir()
            .context("creating a temporary directory")?;
        // Canonical, so paths compare equal to what git daemon resolves.
        let root = dir.path().canonicalize()?;
        let home = root.join("home");
        prepare_git_home(&home)?;
        let repos = root.join("repos");
        fs::create_dir_all(&repos)?;
        let bare = repos.join(REPO_NAME);
        let work = root.join("work");
        run_git(
            git_command(&home)
                .current_dir(&root)
                .args(["init", "-q", "--bare"])
                .arg(&bare),
        )?;
        run_git(
            git_command(&home)
                .current_dir(&root)
                .args(["init", "-q"])
                .arg(&work),
        )?;
        run_git(
            git_command(&home)
                .current_dir(&work)
                .args(["remote", "add", "origin"])
                .arg(&bare),
        )?;
        Ok(Self {
            _dir: dir,
            home,
            repos,
            bare,
            work,
        })
    }

    /// Writes `contents` to `rel_path` in the work tree (creating parent directories). Takes
    /// effect at the next [`commit`](Self::commit).
    pub fn write(&self, rel_path: impl AsRef<Path>, contents: impl AsRef<[u8]>) {
        let path = self.in_work_tree(rel_path.as_ref());
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        }
        fs::write(&path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Removes a file or a whole directory from the work tree. Takes effect at the next commit.
    pub fn remove(&self, rel_path: impl AsRef<Path>) {
        let path = self.in_work_tree(rel_path.as_ref());
        let result = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        result.unwrap_or_else(|e| panic!("removing {}: {e}", path.display()));
    }

    /// Commits everything in the work tree (an empty commit if nothing changed) on the current
    /// branch (`main` unless changed with [`git`](Self::git)) and force-pushes it to the bare
    /// repository's branch of the same name. Returns the commit's full sha.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        let branch = self.git(&["symbolic-ref", "--short", "HEAD"]);
        // Force, so the bare repository mirrors the work tree even after history was rewritten.
        self.git(&[
            "push",
            "-q",
            "origin",
            &format!("+HEAD:refs/heads/{branch}"),
        ]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Commits the pending changes on `branch` (created from the current commit if it does not
    /// exist yet), pushes it, and switches back to the branch that was checked out. Pending
    /// changes that conflict with an existing `branch` make this panic.
    pub fn commit_on(&self, branch: &str, message: &str) -> String {
        let previous = self.git(&["symbolic-ref", "--short", "HEAD"]);
        let exists = crate::run_with_deadline(
            self.git_command().args([
                "show-ref",
                "--verify",
                "--quiet",
                &format!("refs/heads/{branch}"),
            ]),
            GIT_TIMEOUT,
        )
        .map(|out| out.status.success())
        .unwrap_or_else(|e| panic!("{e:#}"));
        if exists {
            self.git(&["switch", "-q", branch]);
        } else {
            self.git(&["switch", "-q", "-c", branch]);
        }
        let sha = self.commit(message);
        self.git(&["switch", "-q", &previous]);
        sha
    }

    /// Creates (or moves) the annotated tag `name` at the work tree's current commit and
    /// force-pushes it. Returns the sha of the commit it points to (not of the tag object).
    pub fn tag(&self, name: &str) -> String {
        self.git(&["tag", "-f", "-a", "-m", name, name]);
        self.git(&[
            "push",
            "-q",
            "--force",
            "origin",
            &format!("refs/tags/{name}"),
        ]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Like [`tag`](Self::tag) but a lightweight tag (a plain ref to the commit).
    pub fn lightweight_tag(&self, name: &str) -> String {
        self.git(&["tag", "-f", name]);
        self.git(&[
            "push",
            "-q",
            "--force",
            "origin",
            &format!("refs/tags/{name}"),
        ]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// The full sha of the bare repository's HEAD (its `main`): what a client fetching the
    /// default branch gets. Panics if nothing was committed yet.
    pub fn head(&self) -> String {
        self.rev("HEAD")
    }

    /// Resolves `rev` (a branch, a tag, `main~1`, …) to a commit sha in the bare repository.
    pub fn rev(&self, rev: &str) -> String {
        run_git(
            git_command(&self.home)
                .arg("--git-dir")
                .arg(&self.bare)
                .args(["rev-parse", "--verify", &format!("{rev}^{{commit}}")]),
        )
        .unwrap_or_else(|e| panic!("resolving {rev:?} in {}: {e:#}", self.bare.display()))
    }

    /// Runs `git args…` in the work tree (isolated config) and returns its trimmed stdout;
    /// the escape hatch for anything the fixture has no method for.
    pub fn git(&self, args: &[&str]) -> String {
        run_git(self.git_command().args(args))
            .unwrap_or_else(|e| panic!("in {}: {e:#}", self.work.display()))
    }

    /// `git ls-remote url` through the isolated environment: ref name → sha, with annotated
    /// tags also present peeled (`refs/tags/v1^{}` → the commit).
    pub fn ls_remote(&self, url: &str) -> BTreeMap<String, String> {
        self.git(&["ls-remote", url])
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .map(|(sha, name)| (name.to_string(), sha.to_string()))
            .collect()
    }

    /// A `git` command with the fixture's isolated environment (no host config, no prompts),
    /// run in the work tree: for clones and `ls-remote`s in tests.
    pub fn git_command(&self) -> Command {
        let mut cmd = git_command(&self.home);
        cmd.current_dir(&self.work);
        cmd
    }

    /// `file://` URL of the bare repository.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// The bare repository.
    pub fn bare_path(&self) -> &Path {
        &self.bare
    }

    /// The work tree the fixture commits from.
    pub fn work_dir(&self) -> &Path {
        &self.work
    }

    fn in_work_tree(&self, rel_path: &Path) -> PathBuf {
        assert!(
            rel_path.is_relative(),
            "GitRepoFixture paths are relative to the work tree, got {}",
            rel_path.display()
        );
        self.work.join(rel_path)
    }

    /// The directory holding the bare repository: give it to [`crate::GitDaemon::start`] or
    /// [`crate::GitHttpServer::start`].
    pub fn repos_dir(&self) -> &Path {
        &self.repos
    }

    /// The isolated HOME the fixture's git commands use.
    pub fn home(&self) -> &Path {
        &self.home
    }
}

/// The path of `fixture`'s bare repository relative to a served `root`, with `/` separators.
pub(crate) fn served_path(root: &Path, fixture: &GitRepoFixture) -> String {
    let rel = fixture.bare_path().strip_prefix(root).unwrap_or_else(|_| {
        panic!(
            "{} is not under the served directory {}: serve fixture.repos_dir()",
            fixture.bare_path().display(),
            root.display()
        )
    });
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}
