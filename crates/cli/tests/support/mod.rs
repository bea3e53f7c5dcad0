//! Test support for end-to-end tests: real `flotilla` processes on 127.0.0.1 with temporary
//! data dirs, driven through the real CLI.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

/// How long any awaited condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `condition` until it returns `Some`, or panics naming `what` after `DEADLINE`.
pub fn wait_for<T>(what: &str, mut condition: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A port that was free a moment ago (kept for restarts of the same server).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}

pub struct ServerProcess {
    child: Option<Child>,
    pub port: u16,
    pub url: String,
    pub data_dir: PathBuf,
    pub admin_token: String,
    extra_args: Vec<String>,
    /// The open-files limits (soft, hard) the process starts under, when not inherited.
    open_files: Option<(u64, u64)>,
}

impl ServerProcess {
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> ServerProcess {
        ServerProcess::start_with_token(data_dir, extra_args, String::new())
    }

    /// Starts a server under open-files limits (soft, hard), as a shell's `ulimit` sets them.
    pub fn start_with_open_files(
        data_dir: &Path,
        extra_args: &[&str],
        open_files: (u64, u64),
    ) -> ServerProcess {
        let port = free_port();
        std::fs::create_dir_all(data_dir).expect("create data dir");
        let mut server = ServerProcess {
            child: None,
            port,
            url: format!("http://127.0.0.1:{port}"),
            data_dir: data_dir.to_path_buf(),
            admin_token: String::new(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            open_files: Some(open_files),
        };
        server.spawn();
        server
    }

    /// Starts a replica on a store that already has an admin token (it writes no token file).
    pub fn start_replica(data_dir: &Path, extra_args: &[&str], admin_token: &str) -> ServerProcess {
        ServerProcess::start_with_token(data_dir, extra_args, admin_token.to_string())
    }

    fn start_with_token(
        data_dir: &Path,
        extra_args: &[&str],
        admin_token: String,
    ) -> ServerProcess {
        let port = free_port();
        std::fs::create_dir_all(data_dir).expect("create data dir");
        let mut server = ServerProcess {
            child: None,
            port,
            url: format!("http://127.0.0.1:{port}"),
            data_dir: data_dir.to_path_buf(),
            admin_token,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            open_files: None,
        };
        server.spawn();
        server
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// The HTTP status of `GET path` (no auth), or None when nothing answers.
    pub fn http_status(&self, path: &str) -> Option<u16> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nhost: flotilla\r\n\r\n").ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        text.split_whitespace().nth(1)?.parse().ok()
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.data_dir.with_extension("server.log"))
            .expect("create server log");
        let mut command = match self.open_files {
            // `exec` keeps the process id: signals and /proc reach the server itself.
            Some((soft, hard)) => {
                let mut command = Command::new("sh");
                command
                    .arg("-c")
                    .arg(format!(
                        "ulimit -Sn {soft} && ulimit -Hn {hard} && exec \"$0\" \"$@\""
                    ))
                    .arg(BIN);
                command
            }
            None => Command::new(BIN),
        };
        let child = command
            .arg("server")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn flotilla server");
        self.child = Some(child);
        let token_file = self.data_dir.join("admin-token");
        // A server that makes its own token writes it; a restart keeps the one already read,
        // and a server given a token removes a stale file (so that file is never read then).
        if self.admin_token.is_empty() {
            self.admin_token = wait_for("the admin token file", || {
                std::fs::read_to_string(&token_file)
                    .ok()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
            });
        }
        wait_for("the server to answer /healthz", || {
            std::net::TcpStream::connect(("127.0.0.1", self.port))
                .ok()
                .and_then(|_| {
                    self.cli(&["get", "bundles", "-o", "json"])
                        .status
                        .success()
                        .then_some(())
                })
        });
    }

    /// SIGKILL: no shutdown hook runs, nothing is flushed.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill server");
            child.wait().expect("reap server");
        }
    }

    pub fn restart(&mut self) {
        self.kill_9();
        self.spawn();
    }

    /// Starts the server again after it exited (same port, data dir and arguments).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is still running");
        self.spawn();
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// Sends `signal` (e.g. "TERM", "INT") to the server.
    pub fn signal(&self, signal: &str) {
        send_signal(self.pid(), signal);
    }

    /// Waits up to `within` for the server to exit; its exit status.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let status = wait_exit(self.child.as_mut().expect("server running"), within);
        self.child = None;
        status
    }

    /// The server's log so far (its standard error).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("server.log")).unwrap_or_default()
    }

    /// Runs the CLI against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("FLOTILLA_SERVER", &self.url)
            .env("FLOTILLA_TOKEN", &self.admin_token)
            .output()
            .expect("run flotilla CLI")
    }

    /// Runs the CLI against this server with `input` on standard input.
    pub fn cli_with_input(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(BIN)
            .args(args)
            .env("FLOTILLA_SERVER", &self.url)
            .env("FLOTILLA_TOKEN", &self.admin_token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run flotilla");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("wait for flotilla")
    }

    /// Runs the CLI, asserting success; returns standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(
            output.status.success(),
            "flotilla {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Applies YAML through `flotilla apply -f -`.
    pub fn apply(&self, yaml: &str) {
        use std::io::Write;
        let mut child = Command::new(BIN)
            .args(["apply", "-f", "-"])
            .env("FLOTILLA_SERVER", &self.url)
            .env("FLOTILLA_TOKEN", &self.admin_token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run flotilla apply");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(yaml.as_bytes())
            .expect("write stdin");
        let output = child.wait_with_output().expect("wait apply");
        assert!(
            output.status.success(),
            "apply failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `flotilla get KIND NAME -o json`, or None when it fails (e.g. not found).
    pub fn get(&self, kind: &str, name: &str) -> Option<Value> {
        let output = self.cli(&["get", kind, name, "-o", "json"]);
        output
            .status
            .success()
            .then(|| serde_json::from_slice(&output.stdout).expect("JSON from get"))
    }

    pub fn list(&self, kind: &str, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["get", kind, "-o", "json"];
        args.extend_from_slice(extra);
        let value: Value = serde_json::from_str(&self.ok(&args)).expect("JSON list");
        value["items"].as_array().cloned().unwrap_or_default()
    }

    /// The value of one sample in the server's `/metrics` (e.g. `name{label="value"}`).
    pub fn metric(&self, sample: &str) -> Option<f64> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nhost: flotilla\r\n\r\n")
            .ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
    }

    pub fn new_token(&self) -> String {
        self.ok(&["token", "create"]).trim().to_string()
    }

    /// Waits until a bundle's summary has `desired` clusters all Ready.
    pub fn wait_bundle_ready(&self, bundle: &str, desired: u64) {
        wait_for(
            &format!("bundle {bundle} Ready on {desired} clusters"),
            || {
                let summary = self.get("bundle", bundle)?["status"]["summary"].clone();
                (summary["desired"] == desired && summary["ready"] == desired).then_some(())
            },
        );
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill_9();
    }
}

pub struct AgentProcess {
    child: Option<Child>,
    pub name: String,
    pub state_dir: PathBuf,
    args: Vec<String>,
}

impl AgentProcess {
    /// Starts a simulated agent syncing every second.
    pub fn start(
        server: &ServerProcess,
        token: &str,
        name: &str,
        labels: &str,
        root: &Path,
    ) -> AgentProcess {
        AgentProcess::start_with_servers(&server.url, token, name, labels, root)
    }

    /// Starts a simulated agent given `--server` as is (one URL or a comma-separated list).
    pub fn start_with_servers(
        servers: &str,
        token: &str,
        name: &str,
        labels: &str,
        root: &Path,
    ) -> AgentProcess {
        let state_dir = root.join(name);
        let args = vec![
            "agent".to_string(),
            "--simulated".into(),
            "--server".into(),
            servers.to_string(),
            "--token".into(),
            token.into(),
            "--name".into(),
            name.into(),
            "--labels".into(),
            labels.into(),
            "--state-dir".into(),
            state_dir.display().to_string(),
            "--interval".into(),
            "1s".into(),
        ];
        let mut agent = AgentProcess {
            child: None,
            name: name.to_string(),
            state_dir,
            args,
        };
        agent.spawn();
        agent
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.state_dir).expect("state dir");
        let log =
            std::fs::File::create(self.state_dir.with_extension("agent.log")).expect("agent log");
        self.child = Some(
            Command::new(BIN)
                .args(&self.args)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn agent"),
        );
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill agent");
            child.wait().expect("reap agent");
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Sends `signal` (e.g. "TERM") to the agent.
    pub fn signal(&self, signal: &str) {
        send_signal(self.child.as_ref().expect("agent running").id(), signal);
    }

    /// Waits up to `within` for the agent to exit; its exit status.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let status = wait_exit(self.child.as_mut().expect("agent running"), within);
        self.child = None;
        status
    }

    /// Objects on the simulated cluster as `Kind/name` strings, per bundle.
    pub fn objects(&self) -> Vec<String> {
        let Ok(bytes) = std::fs::read(self.state_dir.join("simulated-cluster.json")) else {
            return Vec::new();
        };
        let inventory: flotilla_agent::simulated::SimInventory =
            serde_json::from_slice(&bytes).expect("inventory JSON");
        inventory
            .objects()
            .into_iter()
            .map(|o| format!("{}/{}", o.kind, o.name))
            .collect()
    }

    pub fn wait_objects(&self, what: &str, check: impl Fn(&[String]) -> bool) {
        wait_for(&format!("{what} on {}", self.name), || {
            let objects = self.objects();
            check(&objects).then_some(())
        });
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends a signal with `kill(1)` (the tests forbid `unsafe`, so no `libc::kill`).
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Waits up to `within` for `child` to exit, panicking past it.
pub fn wait_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            return status;
        }
        assert!(
            start.elapsed() < within,
            "the process did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A bundle of config maps named `names`, targeted by `selector` (string form).
pub fn config_map_bundle(bundle: &str, names: &[&str], selector: &str, extra_spec: &str) -> String {
    let resources: String = names
        .iter()
        .map(|name| {
            format!(
                "    - apiVersion: v1\n      kind: ConfigMap\n      metadata: {{name: {name}, namespace: apps}}\n      data: {{cluster: \"${{cluster.name}}\"}}\n"
            )
        })
        .collect();
    let selector = flotilla_core::selector::Selector::parse(selector).expect("selector");
    let selector = serde_json::to_string(&selector.to_api()).expect("selector JSON");
    format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Bundle\nmetadata:\n  name: {bundle}\nspec:\n  resources:\n{resources}  targets:\n    - clusterSelector: {selector}\n{extra_spec}"
    )
}
