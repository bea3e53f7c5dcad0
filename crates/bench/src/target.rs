//! The server under test: a `flotilla server` child process on a fresh data dir (so that its CPU
//! and memory can be read from /proc and it can be killed for real), or a server someone else
//! runs (`--server`).

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// Where the server under test runs.
pub enum Target {
    Child(Box<ChildServer>),
    External { base: String, admin_token: String },
}

impl Target {
    /// The server admin calls go to (the first of several replicas).
    pub fn base(&self) -> String {
        match self {
            Target::Child(child) => format!("http://{}", child.listen),
            Target::External { base, .. } => base
                .split(',')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string(),
        }
    }

    /// Every server the simulated fleet syncs with: the replicas of `--server URL1,URL2`,
    /// clusters spread evenly over them.
    pub fn agent_servers(&self) -> String {
        match self {
            Target::Child(_) => self.base(),
            Target::External { base, .. } => base.clone(),
        }
    }

    pub fn admin_token(&self) -> &str {
        match self {
            Target::Child(child) => &child.admin_token,
            Target::External { admin_token, .. } => admin_token,
        }
    }

    /// The server's process id, when it is ours to sample.
    pub fn pid(&self) -> Option<i32> {
        match self {
            Target::Child(child) => child.process.id().map(|id| id as i32),
            Target::External { .. } => None,
        }
    }
}

/// A `flotilla server` started by the bench.
pub struct ChildServer {
    exe: PathBuf,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    admin_token: String,
    process: Child,
    log: PathBuf,
    cpus: Option<String>,
}

impl ChildServer {
    /// Starts `exe server` on a free port of 127.0.0.1 with `data_dir` (created fresh by the
    /// caller) and waits until it serves.
    /// With `cpus`, the server runs pinned to them (through `taskset`, which execs it, so the
    /// process id is the server's).
    pub async fn start(
        exe: &Path,
        data_dir: &Path,
        log: &Path,
        cpus: Option<&str>,
    ) -> anyhow::Result<ChildServer> {
        let listen = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .context("find a free port")?;
        let process = spawn(exe, data_dir, listen, log, cpus)?;
        let mut server = ChildServer {
            exe: exe.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            listen,
            admin_token: String::new(),
            process,
            log: log.to_path_buf(),
            cpus: cpus.map(str::to_string),
        };
        server.wait_until_serving(Duration::from_secs(120)).await?;
        let token_path = data_dir.join("admin-token");
        server.admin_token = std::fs::read_to_string(&token_path)
            .with_context(|| format!("read {}", token_path.display()))?
            .trim()
            .to_string();
        Ok(server)
    }

    /// `kill -9`: no shutdown path runs, whatever was not yet durable is gone.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.process.start_kill().context("kill the server")?;
        self.process.wait().await.context("reap the server")?;
        Ok(())
    }

    /// Starts the server again on the same data dir and port; returns how long until it served.
    pub async fn restart(&mut self, deadline: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        self.process = spawn(
            &self.exe,
            &self.data_dir,
            self.listen,
            &self.log,
            self.cpus.as_deref(),
        )?;
        self.wait_until_serving(deadline).await?;
        Ok(started.elapsed())
    }

    async fn wait_until_serving(&mut self, deadline: Duration) -> anyhow::Result<()> {
        let url = format!("http://{}/healthz", self.listen);
        let client = reqwest::Client::new();
        let until = Instant::now() + deadline;
        loop {
            if let Ok(response) = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                && response.status().is_success()
            {
                return Ok(());
            }
            if let Some(status) = self
                .process
                .try_wait()
                .context("check the server process")?
            {
                bail!(
                    "the server exited ({status}) before serving; see {}",
                    self.log.display()
                );
            }
            if Instant::now() > until {
                bail!(
                    "the server did not serve within {deadline:?}; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(mut self) {
        let _ = self.process.start_kill();
        let _ = self.process.wait().await;
    }
}

fn spawn(
    exe: &Path,
    data_dir: &Path,
    listen: SocketAddr,
    log: &Path,
    cpus: Option<&str>,
) -> anyhow::Result<Child> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("open {}", log.display()))?;
    let mut command = match cpus {
        Some(cpus) => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cpus).arg(exe);
            command
        }
        None => Command::new(exe),
    };
    command
        .arg("server")
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().context("clone log handle")?)
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {} server", exe.display()))
}
