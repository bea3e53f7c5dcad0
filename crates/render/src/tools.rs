//! The external rendering engines (kustomize, helm) and running them with a deadline.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long one engine run may take before it is killed (a chart download can hang).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The engines a rendering may call: the argv prefix that builds a kustomization (the directory is
/// appended) and the helm binary. Either may be missing; rendering a folder that needs a missing
/// engine fails with an error saying what to install.
///
/// Renders use the network only for the hosts in `allowed_hosts` (none by default): a remote
/// kustomize resource or base, a chart repository, registry or chart dependency on any other
/// host fails the rendering before an engine runs (see `guard`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    kustomize: Option<Vec<String>>,
    helm: Option<PathBuf>,
    timeout: Duration,
    /// Lower-cased `host`, `host:port`, `*.domain` or `*` (any host).
    allowed_hosts: Vec<String>,
}

impl Default for Tools {
    fn default() -> Self {
        Tools::none()
    }
}

impl Tools {
    /// Finds the engines: `FLOTILLA_KUSTOMIZE` (a command line such as `kustomize build` or
    /// `kubectl kustomize`) and `FLOTILLA_HELM` (a path) win; otherwise `kustomize` on `PATH`
    /// (run as `kustomize build`), else `kubectl` (run as `kubectl kustomize`), and `helm` on `PATH`.
    pub fn detect() -> Tools {
        let kustomize = match std::env::var("FLOTILLA_KUSTOMIZE") {
            Ok(command) if !command.trim().is_empty() => {
                Some(command.split_whitespace().map(String::from).collect())
            }
            _ => find_in_path("kustomize")
                .map(|path| vec![path.to_string_lossy().into_owned(), "build".into()])
                .or_else(|| {
                    find_in_path("kubectl")
                        .map(|path| vec![path.to_string_lossy().into_owned(), "kustomize".into()])
                }),
        };
        let helm = match std::env::var_os("FLOTILLA_HELM") {
            Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
            _ => find_in_path("helm"),
        };
        Tools {
            kustomize,
            helm,
            timeout: DEFAULT_TIMEOUT,
            allowed_hosts: Vec::new(),
        }
    }

    /// No engines at all: only raw YAML folders render.
    pub fn none() -> Tools {
        Tools {
            kustomize: None,
            helm: None,
            timeout: DEFAULT_TIMEOUT,
            allowed_hosts: Vec::new(),
        }
    }

    /// Uses the helm binary at `path`.
    pub fn with_helm(mut self, path: PathBuf) -> Tools {
        self.helm = Some(path);
        self
    }

    /// Builds kustomizations with `argv` followed by the directory, e.g. `["kubectl", "kustomize"]`.
    pub fn with_kustomize(mut self, argv: Vec<String>) -> Tools {
        self.kustomize = (!argv.is_empty()).then_some(argv);
        self
    }

    /// Kills an engine run that takes longer than `timeout` (default 5 minutes).
    pub fn with_timeout(mut self, timeout: Duration) -> Tools {
        self.timeout = timeout;
        self
    }

    /// Lets renders fetch from these hosts: `host` (any port), `host:port`, `*.domain` (its
    /// sub-domains) or `*` (anywhere). Blank entries are ignored.
    pub fn with_allowed_hosts<I, S>(mut self, hosts: I) -> Tools
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.allowed_hosts = hosts
            .into_iter()
            .map(|host| host.as_ref().trim().to_ascii_lowercase())
            .filter(|host| !host.is_empty())
            .collect();
        self
    }

    /// Whether renders may fetch from `host` (`host` or `host:port`, lower-cased).
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let name = strip_port(&host);
        !name.is_empty()
            && self.allowed_hosts.iter().any(|allowed| {
                if allowed == "*" {
                    true
                } else if let Some(domain) = allowed.strip_prefix("*.") {
                    name.ends_with(&format!(".{domain}"))
                } else {
                    *allowed == host || *allowed == name
                }
            })
    }

    /// The helm binary, if any.
    pub fn helm(&self) -> Option<&Path> {
        self.helm.as_deref()
    }

    /// The kustomize argv prefix, if any.
    pub fn kustomize(&self) -> Option<&[String]> {
        self.kustomize.as_deref()
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// `host` without a `:port` (IPv6 literals in brackets keep their colons).
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The first executable file called `name` in the `PATH` directories.
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    let Ok(metadata) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        metadata.is_file()
    }
}

/// Why an engine run produced no output.
#[derive(Debug)]
pub(crate) enum RunError {
    /// The program does not exist (or is not executable).
    NotFound,
    /// It could not be started for another reason.
    Spawn(std::io::Error),
    /// It was killed after the deadline.
    Timeout(Duration),
}

/// Environment variables passed through to engines; everything else is cleared so a user's
/// helm or kubectl configuration cannot change a rendering.
const PASSED_ENV: &[&str] = &[
    "PATH",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "TMPDIR",
];

/// Clears the environment of `command` except [`PASSED_ENV`], then sets `vars`.
pub(crate) fn isolate(command: &mut Command, vars: &[(&str, OsString)]) {
    command.env_clear();
    for name in PASSED_ENV {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    for (name, value) in vars {
        command.env(name, value);
    }
}

/// Runs `command` with stdin closed and stdout/stderr captured, killing it at `timeout`.
pub(crate) fn run(command: &mut Command, timeout: Duration) -> Result<Output, RunError> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => RunError::NotFound,
        _ => RunError::Spawn(error),
    })?;
    // Read both pipes on their own threads so a chatty engine never blocks on a full pipe.
    let (sender, receiver) = mpsc::channel::<(bool, Vec<u8>)>();
    let readers: Vec<(bool, Box<dyn Read + Send>)> = [
        child
            .stdout
            .take()
            .map(|pipe| (true, Box::new(pipe) as Box<dyn Read + Send>)),
        child
            .stderr
            .take()
            .map(|pipe| (false, Box::new(pipe) as Box<dyn Read + Send>)),
    ]
    .into_iter()
    .flatten()
    .collect();
    for (is_stdout, mut pipe) in readers {
        let sender = sender.clone();
        std::thread::spawn(move || {
            let mut buffer = Vec::new();
            let _ = pipe.read_to_end(&mut buffer);
            let _ = sender.send((is_stdout, buffer));
        });
    }
    drop(sender);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::Timeout(timeout));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(error) => return Err(RunError::Spawn(error)),
        }
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    // A grandchild may keep a pipe open after the engine exits: give the readers a short grace.
    let grace = Instant::now() + Duration::from_secs(5);
    for _ in 0..2 {
        let left = grace.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok((true, data)) => stdout = data,
            Ok((false, data)) => stderr = data,
            Err(_) => break,
        }
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// The engine's stderr (or stdout when stderr is empty), trimmed and bounded for an error message.
pub(crate) fn failure_text(output: &Output) -> String {
    let text = if output.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        String::from_utf8_lossy(&output.stderr)
    } else {
        String::from_utf8_lossy(&output.stdout)
    };
    let text = text.trim();
    const LIMIT: usize = 4000;
    if text.len() > LIMIT {
        let mut end = LIMIT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &text[..end])
    } else if text.is_empty() {
        format!("it exited with {} and printed nothing", output.status)
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_engines_override_and_an_empty_kustomize_argv_means_none() {
        let tools = Tools::none()
            .with_helm(PathBuf::from("/opt/helm"))
            .with_kustomize(vec!["kubectl".into(), "kustomize".into()]);
        assert_eq!(tools.helm(), Some(Path::new("/opt/helm")));
        assert_eq!(tools.kustomize().map(<[String]>::len), Some(2));
        assert_eq!(Tools::none().with_kustomize(Vec::new()).kustomize(), None);
        assert_eq!(Tools::default(), Tools::none());
    }

    #[test]
    fn allowed_hosts_match_by_name_port_or_domain_and_nothing_is_allowed_by_default() {
        assert!(!Tools::none().allows_host("example.com"));
        let tools =
            Tools::none().with_allowed_hosts(["Charts.Example", "127.0.0.1:8080", "*.corp"]);
        assert!(tools.allows_host("charts.example"));
        assert!(tools.allows_host("charts.example:443"));
        assert!(tools.allows_host("127.0.0.1:8080"));
        assert!(!tools.allows_host("127.0.0.1:9090"));
        assert!(tools.allows_host("git.corp"));
        assert!(!tools.allows_host("corp"));
        assert!(!tools.allows_host("evil.example"));
        assert!(
            Tools::none()
                .with_allowed_hosts(["*"])
                .allows_host("anything")
        );
        assert!(!Tools::none().with_allowed_hosts(["*"]).allows_host(""));
    }

    #[test]
    fn runs_are_killed_at_the_deadline() {
        let mut command = Command::new("sleep");
        command.arg("5");
        let started = Instant::now();
        let result = run(&mut command, Duration::from_millis(200));
        assert!(matches!(result, Err(RunError::Timeout(_))), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(4));
        let result = run(
            &mut Command::new("/nonexistent/engine"),
            Duration::from_secs(5),
        );
        assert!(matches!(result, Err(RunError::NotFound)), "{result:?}");
    }
}
