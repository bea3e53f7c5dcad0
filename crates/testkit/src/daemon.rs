//! `git daemon`: the `git://` transport, served by the real git.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::git::{
    GitRepoFixture, git_command, git_program, isolate, prepare_git_home, served_path,
};
use crate::{ChildGuard, POLL, run_with_deadline};

/// How long the daemon gets to answer its first `git ls-remote`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts with a fresh port when another process took the one we picked.
const PORT_ATTEMPTS: usize = 5;

/// Why [`GitDaemon::wait_ready`] gave up.
enum NotReady {
    Exited,
    TimedOut,
}
use NotReady::{Exited, TimedOut};

/// A `git daemon` serving every repository under a directory over `git://127.0.0.1:PORT/`.
/// Killed when dropped.
pub struct GitDaemon {
    child: ChildGuard,
    port: u16,
    root: PathBuf,
    // HOME for the daemon and its log; removed on drop (after the child is killed).
    _dir: TempDir,
}

impl GitDaemon {
    /// Serves `fixture` (its [`repos_dir`](GitRepoFixture::repos_dir)).
    pub fn serve(fixture: &GitRepoFixture) -> Self {
        Self::start(fixture.repos_dir())
    }

    /// Serves every repository under `root` (read-only, `--export-all`). Returns once a real
    /// `git ls-remote` against it succeeds. Panics (with the daemon's log) if it cannot start.
    pub fn start(root: impl AsRef<Path>) -> Self {
        let root = root.as_ref();
        Self::try_start(root)
            .unwrap_or_else(|e| panic!("GitDaemon::start({}): {e:#}", root.display()))
    }

    fn try_start(root: &Path) -> Result<Self> {
        let root = root
            .canonicalize()
            .with_context(|| format!("{} does not exist", root.display()))?;
        let mut dir = tempfile::Builder::new()
            .prefix("flotilla-git-daemon-")
            .tempdir()?;
        let home = dir.path().join("home");
        prepare_git_home(&home)?;
        let log = dir.path().join("daemon.log");
        let probe = first_repository(&root);
        let program = git_program("git-daemon")?;

        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port()?;
            let log_file = fs::File::create(&log)?;
            let mut cmd = Command::new(&program);
            isolate(&mut cmd, &home);
            let child = cmd
                .arg("--reuseaddr")
                .arg(format!("--base-path={}", root.display()))
                .arg("--export-all")
                .arg("--listen=127.0.0.1")
                .arg(format!("--port={port}"))
                .arg("--informative-errors")
                .arg("--verbose")
                .arg(&root)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn()
                .with_context(|| format!("cannot start {}", program.display()))?;
            let mut daemon = GitDaemon {
                child: ChildGuard::new(child),
                port,
                root: root.clone(),
                _dir: dir,
            };
            match daemon.wait_ready(&home, probe.as_deref()) {
                Ok(()) => return Ok(daemon),
                Err(Exited) => {
                    // Most likely somebody took the port between our probe and the daemon's
                    // bind: try another one.
                    let text = fs::read_to_string(&log).unwrap_or_default();
                    if attempt == PORT_ATTEMPTS {
                        bail!("git daemon exited {attempt} times; last log:\n{text}");
                    }
                    tracing::debug!(port, log = %text, "git daemon exited, retrying");
                    // Take the directory back for the next attempt (the child is dead).
                    let GitDaemon { _dir: taken, .. } = daemon;
                    dir = taken;
                }
                Err(TimedOut) => {
                    let text = fs::read_to_string(&log).unwrap_or_default();
                    bail!(
                        "git daemon on port {port} did not answer `git ls-remote` within \
                         {READY_TIMEOUT:?}; log:\n{text}"
                    );
                }
            }
        }
        unreachable!("the last attempt returns or bails")
    }

    /// Polls until `git ls-remote` against a served repository succeeds (or, with no repository
    /// yet, until the port accepts connections), the daemon exits, or the deadline passes.
    fn wait_ready(&mut self, home: &Path, probe: Option<&str>) -> Result<(), NotReady> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if !matches!(self.child.0.try_wait(), Ok(None)) {
                return Err(NotReady::Exited);
            }
            let ready = match probe {
                Some(rel) => run_with_deadline(
                    git_command(home)
                        .arg("ls-remote")
                        .arg(format!("git://127.0.0.1:{}/{rel}", self.port)),
                    Duration::from_secs(5),
                )
                .map(|out| out.status.success())
                .unwrap_or(false),
                None => TcpStream::connect_timeout(
                    &SocketAddr::from(([127, 0, 0, 1], self.port)),
                    Duration::from_secs(1),
                )
                .is_ok(),
            };
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(NotReady::TimedOut);
            }
            std::thread::sleep(POLL);
        }
    }

    /// `git://127.0.0.1:PORT/repo.git` for a fixture under the served directory.
    pub fn url_for(&self, fixture: &GitRepoFixture) -> String {
        format!(
            "git://127.0.0.1:{}/{}",
            self.port,
            served_path(&self.root, fixture)
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the daemon now (as dropping does): for tests of an unreachable remote.
    pub fn stop(self) {
        drop(self);
    }
}

/// A port that was free a moment ago: bind port 0, read the port, close the socket. The caller
/// retries if somebody else takes it before the daemon binds it.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A repository directly under `root` (sorted by name), to probe readiness with.
fn first_repository(root: &Path) -> Option<String> {
    let mut names: Vec<String> = fs::read_dir(root)
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter(|entry| {
            let path = entry.path();
            path.join("HEAD").is_file() && path.join("objects").is_dir()
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.into_iter().next()
}
