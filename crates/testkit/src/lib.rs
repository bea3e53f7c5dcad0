//! Test support for flotilla: real git repositories served over real transports, a real helm
//! binary, a throwaway PostgreSQL server and a static HTTP file server, so git-source, Helm and
//! PostgreSQL tests exercise the genuine tools instead of stand-ins.
//!
//! - [`GitRepoFixture`]: a bare repository plus a work tree to commit from, made with `git`.
//! - [`GitDaemon`]: `git daemon` serving fixtures over `git://`.
//! - [`GitHttpServer`]: smart HTTP through `git http-backend` (optionally behind Basic auth).
//! - [`HttpFileServer`]: a directory over plain HTTP (e.g. a Helm chart repository).
//! - [`helm_binary`], [`helm_command`], [`kubectl_binary`], [`kustomize_argv`],
//!   [`kustomize_available`]: real tools for rendering, pinned ones from a PyPI package unless
//!   overridden (`layer` owns their shared cache).
//! - [`postgres_url`], [`PostgresServer`]: a throwaway PostgreSQL server (TLS on) per test
//!   process, made from the installed PostgreSQL binaries, unless `FLOTILLA_TEST_POSTGRES` names
//!   one.
//! - [`generate`]: proptest strategies for the inputs clients send (JSON documents, selectors).
//!
//! Everything is blocking std API (the HTTP servers run their own tokio runtime on a thread), so
//! both sync and async tests can use it. Every child process is killed when its owner is dropped,
//! and every wait has a deadline. Constructors panic with what to install or fix: this is test
//! support, and a panic names the problem at the test that hit it.
//!
//! Used only as a dev-dependency.

mod daemon;
pub mod generate;
mod git;
mod helm;
mod http;
mod kubectl;
mod layer;
mod postgres;

pub use daemon::GitDaemon;
pub use git::GitRepoFixture;
pub use helm::{HELM_PACKAGE, helm_binary, helm_command};
pub use http::{GitHttpServer, HttpFileServer};
pub use kubectl::{KUBECTL_OVERRIDE_VAR, kubectl_binary, kustomize_argv, kustomize_available};
pub use layer::LAYER_PACKAGE;
pub use postgres::{
    POSTGRES_OVERRIDE_VAR, PostgresServer, postgres_bin_dir, postgres_url, throwaway_postgres,
};

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How often [`wait_until`] and the process helpers re-check their condition.
const POLL: Duration = Duration::from_millis(10);

/// Runs `cmd` to completion with stdin closed and stdout/stderr captured; kills it and fails if it
/// has not exited within `timeout`.
pub fn run_with_deadline(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    run_inner(cmd, None, timeout)
}

/// [`run_with_deadline`] with `input` written to the command's stdin.
pub fn run_with_stdin(cmd: &mut Command, input: &[u8], timeout: Duration) -> Result<Output> {
    run_inner(cmd, Some(input.to_vec()), timeout)
}

fn run_inner(cmd: &mut Command, input: Option<Vec<u8>>, timeout: Duration) -> Result<Output> {
    let what = describe(cmd);
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = ChildGuard::new(
        cmd.spawn()
            .with_context(|| format!("cannot start `{what}`: is `{}` installed?", program(cmd)))?,
    );
    if let (Some(input), Some(mut stdin)) = (input, child.0.stdin.take()) {
        // A thread, so a child that answers before reading all its input cannot deadlock us.
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&input);
        });
    }
    // Readers on their own threads so a chatty child never blocks on a full pipe.
    let (tx, rx) = mpsc::channel::<(bool, Vec<u8>)>();
    let stdout = child.0.stdout.take().expect("stdout was piped");
    let stderr = child.0.stderr.take().expect("stderr was piped");
    spawn_reader(stdout, true, tx.clone());
    spawn_reader(stderr, false, tx);

    let deadline = Instant::now() + timeout;
    let status = wait_child(&mut child.0, deadline)
        .with_context(|| format!("`{what}` did not finish within {timeout:?}"))?;
    // The pipes close when the child exits, unless it left a grandchild holding them: so the
    // readers get a (short) deadline too.
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let pipes_deadline = Instant::now() + Duration::from_secs(5);
    for _ in 0..2 {
        let left = pipes_deadline.saturating_duration_since(Instant::now());
        let (is_stdout, buf) = rx
            .recv_timeout(left)
            .with_context(|| format!("`{what}` exited but its output pipes stayed open"))?;
        if is_stdout {
            stdout = buf;
        } else {
            stderr = buf;
        }
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// [`run_with_deadline`], failing unless the command exits 0; returns its trimmed stdout.
pub fn run_checked(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let out = run_with_deadline(cmd, timeout)?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut message = format!("`{}` failed ({})", describe(cmd), out.status);
        for (name, text) in [("stderr", stderr.trim()), ("stdout", stdout.as_str())] {
            if !text.is_empty() {
                message.push_str(&format!("\n{name}: {text}"));
            }
        }
        bail!(message);
    }
    Ok(stdout)
}

/// Polls `condition` every few milliseconds until it holds; fails naming `what` after `timeout`.
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
}

fn spawn_reader(
    mut pipe: impl Read + Send + 'static,
    is_stdout: bool,
    tx: mpsc::Sender<(bool, Vec<u8>)>,
) {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send((is_stdout, buf));
    });
}

/// Waits for `child` to exit until `deadline`; past it, kills it and fails.
fn wait_child(child: &mut Child, deadline: Instant) -> Result<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("killed after its deadline");
        }
        std::thread::sleep(POLL);
    }
}

/// Owns a child process and kills (then reaps) it when dropped.
pub(crate) struct ChildGuard(pub(crate) Child);

impl ChildGuard {
    pub(crate) fn new(child: Child) -> Self {
        Self(child)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// `program arg arg …` for error messages.
fn describe(cmd: &Command) -> String {
    let mut s = program(cmd);
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

fn program(cmd: &Command) -> String {
    cmd.get_program().to_string_lossy().into_owned()
}

/// The first executable file called `name` in `$PATH`.
pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
