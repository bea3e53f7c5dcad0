//! A throwaway PostgreSQL server for tests, made from the machine's PostgreSQL binaries.
//!
//! The PostgreSQL tests must run on a fresh machine where nobody started or configured a
//! database: so each test process `initdb`s a private cluster in a temporary directory (trust
//! authentication in its own `pg_hba.conf` only, TLS on with a certificate made at start-up),
//! listening on a Unix socket in that directory and on 127.0.0.1 at a free port. One server is
//! shared by every test of a process ([`postgres_url`]); tests isolate themselves with a schema
//! or database of their own.
//!
//! Cleanup does not depend on destructors (statics are never dropped, and a test process may be
//! killed): a watchdog shell started next to the server reads a pipe whose only writer is this
//! process; when the process ends for any reason the pipe closes, and the watchdog stops the
//! server (`pg_ctl stop -m immediate`) and deletes the directory. Directories left by a process
//! whose watchdog died too are swept at the next start, by the process id in their name.
//!
//! PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user (or
//! `nobody`) and every PostgreSQL command runs as that user through `setpriv`.

use std::{
    env,
    ffi::OsString,
    fs,
    io::Write,
    os::unix::{fs::MetadataExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{ChildStdin, Command, Stdio},
    sync::{Mutex, OnceLock},
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::{find_on_path, is_executable, run_checked, run_with_deadline};

/// Overrides the throwaway server: a libpq key/value string for a server the tests may use
/// (superuser, able to create schemas and databases).
pub const POSTGRES_OVERRIDE_VAR: &str = "FLOTILLA_TEST_POSTGRES";

/// What to install when there are no PostgreSQL binaries, for the error message.
const INSTALL_HINT: &str = "install PostgreSQL's server binaries (Debian/Ubuntu: `apt-get install \
     postgresql`; Fedora: `dnf install postgresql-server`), or set FLOTILLA_TEST_POSTGRES to a \
     libpq connection string for a server the tests may use";

/// Prefix of the temporary directories, followed by the owning process id and a random part.
const DIR_PREFIX: &str = "flotilla-pg-";

/// Deadline for `initdb` (a few seconds usually; slow disks and busy CI machines take longer).
const INITDB_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `pg_ctl start -w` may wait for the server to accept connections.
const START_TIMEOUT_SECS: u64 = 60;
/// Deadline for the other commands (openssl, pg_ctl stop, id).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Starts retried with a new port when another process took the free port first.
const PORT_ATTEMPTS: usize = 5;

/// Settings appended to the cluster's `postgresql.conf`. Durability is off (the data is thrown
/// away); connections are generous because tests run in parallel, each store holding a writer
/// and a reader pool, some with several replicas.
const SETTINGS: &str = "\
listen_addresses = '127.0.0.1'
max_connections = 300
shared_buffers = 32MB
fsync = off
synchronous_commit = off
full_page_writes = off
ssl = on
";

/// The libpq key/value connection string the PostgreSQL tests use: `$FLOTILLA_TEST_POSTGRES` if
/// set, else this process's throwaway server (started on first use), as the `postgres`
/// superuser over TCP (`host=127.0.0.1 port=… user=postgres dbname=postgres`).
///
/// Panics, naming what to install, when there is no server to be had: the PostgreSQL tests
/// fail rather than skip.
pub fn postgres_url() -> String {
    if let Some(url) = env::var(POSTGRES_OVERRIDE_VAR)
        .ok()
        .filter(|v| !v.is_empty())
    {
        return url;
    }
    match throwaway_postgres() {
        Ok(server) => server.url(),
        Err(error) => panic!("the PostgreSQL tests need a server: {error:#}"),
    }
}

/// This process's shared throwaway server, started on first call (whatever
/// `$FLOTILLA_TEST_POSTGRES` says). It lives until the process exits.
pub fn throwaway_postgres() -> Result<&'static PostgresServer> {
    static SERVER: OnceLock<Result<PostgresServer, String>> = OnceLock::new();
    SERVER
        .get_or_init(|| PostgresServer::start().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::Error::msg(e.clone()))
}

/// A running private PostgreSQL server. Dropping it stops the server and deletes its files.
#[derive(Debug)]
pub struct PostgresServer {
    dir: PathBuf,
    port: u16,
    version: String,
    /// The watchdog's stdin: closing it (drop, or this process ending) makes it clean up.
    watchdog: Mutex<Option<ChildStdin>>,
    watchdog_child: Mutex<std::process::Child>,
}

impl PostgresServer {
    /// Starts a new server in a fresh temporary directory (see the module docs).
    pub fn start() -> Result<PostgresServer> {
        let bin = postgres_bin_dir()?;
        let user = RunAs::detect()?;
        let base = temp_base(&user);
        sweep_stale_dirs(&base, &bin, &user);

        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir_in(&base)
            .with_context(|| format!("creating a directory in {}", base.display()))?
            .keep();
        let watchdog = spawn_watchdog(&dir, &bin, &user)?;
        let mut server = PostgresServer {
            dir,
            port: 0,
            version: String::new(),
            watchdog: Mutex::new(watchdog.stdin),
            watchdog_child: Mutex::new(watchdog.child),
        };
        // From here on, an error drops `server`, and the watchdog removes what was made.
        if let Some(uid) = user.uid_gid {
            std::os::unix::fs::chown(&server.dir, Some(uid.0), Some(uid.1))
                .with_context(|| format!("giving {} to {}", server.dir.display(), user.name))?;
        }
        server.version = server.initialize(&bin, &user)?;
        server.port = server.start_on_free_port(&bin, &user)?;
        eprintln!(
            "flotilla-testkit: throwaway PostgreSQL {} on 127.0.0.1:{} (socket and data in {})",
            server.version,
            server.port,
            server.dir.display()
        );
        Ok(server)
    }

    /// `host=127.0.0.1 port=… user=postgres dbname=postgres`.
    pub fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// The same server through its Unix socket.
    pub fn socket_url(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.dir.display(),
            self.port
        )
    }

    /// The TCP port on 127.0.0.1 (also the number in the Unix socket's name).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the Unix socket (and everything else of this server).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The server's self-signed TLS certificate (PEM), issued to `localhost`: a root to trust
    /// for `sslmode=verify-full` with `host=localhost`.
    pub fn certificate(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    /// `postgres --version`, e.g. `postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)`.
    pub fn version(&self) -> &str {
        &self.version
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Certificate, `initdb`, settings. Returns the server's version line.
    fn initialize(&self, bin: &Path, user: &RunAs) -> Result<String> {
        let version = run_checked(
            Command::new(bin.join("postgres")).arg("--version"),
            COMMAND_TIMEOUT,
        )?;
        let openssl = find_on_path("openssl").context(
            "the openssl CLI makes the throwaway PostgreSQL's TLS certificate: install openssl",
        )?;
        run_checked(
            user.command(&openssl, &self.dir)
                .args(["req", "-x509", "-newkey", "ec"])
                .args([
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-days",
                    "30",
                ])
                .args(["-subj", "/CN=localhost"])
                .args(["-addext", "subjectAltName=DNS:localhost"])
                .args(["-addext", "basicConstraints=critical,CA:FALSE"])
                .args(["-keyout", "server.key", "-out", "server.crt"]),
            COMMAND_TIMEOUT,
        )
        .context("making a self-signed certificate with openssl")?;
        fs::set_permissions(
            self.dir.join("server.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )?;
        run_checked(
            user.command(&bin.join("initdb"), &self.dir)
                .arg("--pgdata")
                .arg(self.data_dir())
                .args(["--username=postgres", "--auth=trust", "--encoding=UTF8"])
                .args(["--locale=C", "--no-sync"]),
            INITDB_TIMEOUT,
        )
        .context("initdb")?;
        let settings = format!(
            "{SETTINGS}unix_socket_directories = '{dir}'\n\
             ssl_cert_file = '{dir}/server.crt'\nssl_key_file = '{dir}/server.key'\n",
            dir = self.dir.display()
        );
        fs::OpenOptions::new()
            .append(true)
            .open(self.data_dir().join("postgresql.conf"))
            .and_then(|mut conf| conf.write_all(settings.as_bytes()))
            .context("writing postgresql.conf")?;
        Ok(version)
    }

    /// `pg_ctl start` on a port that was free a moment ago, again on another one if someone
    /// took it in between. Returns the port.
    fn start_on_free_port(&self, bin: &Path, user: &RunAs) -> Result<u16> {
        let log = self.dir.join("postgres.log");
        for _ in 0..PORT_ATTEMPTS {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let log_start = fs::metadata(&log).map_or(0, |m| m.len() as usize);
            let started = run_with_deadline(
                user.command(&bin.join("pg_ctl"), &self.dir)
                    .arg("start")
                    .arg("--pgdata")
                    .arg(self.data_dir())
                    .arg("--log")
                    .arg(&log)
                    .args(["--wait", "--timeout", &START_TIMEOUT_SECS.to_string()])
                    .arg("-o")
                    .arg(format!("-p {port}")),
                Duration::from_secs(START_TIMEOUT_SECS + 30),
            )?;
            if started.status.success() {
                return Ok(port);
            }
            // This attempt's lines only: the log is appended to across attempts.
            let log_text = fs::read_to_string(&log)
                .unwrap_or_default()
                .get(log_start..)
                .unwrap_or_default()
                .to_string();
            if !log_text.contains("could not bind") && !log_text.contains("already in use") {
                bail!(
                    "pg_ctl start failed ({}): {}\n{}",
                    started.status,
                    String::from_utf8_lossy(&started.stderr).trim(),
                    log_text.trim()
                );
            }
        }
        bail!("no free port for PostgreSQL after {PORT_ATTEMPTS} attempts")
    }
}

impl Drop for PostgresServer {
    /// Closes the watchdog's pipe and waits for it to have stopped the server and deleted the
    /// directory, so an owned server is gone when this returns.
    fn drop(&mut self) {
        self.watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let mut child = self
            .watchdog_child
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let _ = crate::wait_child(&mut child, std::time::Instant::now() + COMMAND_TIMEOUT);
    }
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`: the one `initdb` on PATH resolves
/// to, else the highest version among the distributions' versioned directories.
pub fn postgres_bin_dir() -> Result<PathBuf> {
    bin_dir_in(
        find_on_path("initdb"),
        &[
            (Path::new("/usr/lib/postgresql"), ""),
            (Path::new("/usr"), "pgsql-"),
        ],
    )
}

/// [`postgres_bin_dir`] given `initdb` on PATH (if any) and the (root, name prefix) pairs under
/// which versioned directories (`<root>/<prefix><version>/bin`) are looked for.
fn bin_dir_in(initdb_on_path: Option<PathBuf>, roots: &[(&Path, &str)]) -> Result<PathBuf> {
    let complete = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|tool| is_executable(&dir.join(tool)))
    };
    if let Some(initdb) = initdb_on_path {
        // Resolved: a symlink on PATH (e.g. /usr/local/bin/initdb) names the real directory.
        let dir = fs::canonicalize(&initdb)
            .ok()
            .and_then(|real| real.parent().map(Path::to_path_buf));
        if let Some(dir) = dir.filter(|dir| complete(dir)) {
            return Ok(dir);
        }
    }
    let mut candidates = Vec::new();
    for (root, prefix) in roots {
        let Ok(entries) = fs::read_dir(root) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(version) = name.strip_prefix(prefix).and_then(parse_version) {
                candidates.push((version, entry.path().join("bin")));
            }
        }
    }
    highest_complete(candidates, complete).with_context(|| {
        format!(
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres) on PATH or in \
             /usr/lib/postgresql/*/bin: {INSTALL_HINT}"
        )
    })
}

/// `15` → (15, 0), `9.6` → (9, 6); anything else is not a version directory.
fn parse_version(name: &str) -> Option<(u32, u32)> {
    let (major, minor) = name.split_once('.').unwrap_or((name, "0"));
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The directory with the highest version among those that hold all the binaries.
fn highest_complete(
    mut candidates: Vec<((u32, u32), PathBuf)>,
    complete: impl Fn(&Path) -> bool,
) -> Option<PathBuf> {
    candidates.sort();
    candidates
        .into_iter()
        .rev()
        .map(|(_, dir)| dir)
        .find(|dir| complete(dir))
}

/// Who runs the PostgreSQL commands: this process's user, or (as root) an unprivileged one.
#[derive(Debug)]
struct RunAs {
    name: String,
    /// Set when the commands must switch to that user (uid, gid).
    uid_gid: Option<(u32, u32)>,
}

impl RunAs {
    fn detect() -> Result<RunAs> {
        // /proc/self belongs to the process's effective user.
        let euid = fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
        if euid != 0 {
            return Ok(RunAs {
                name: format!("uid {euid}"),
                uid_gid: None,
            });
        }
        if find_on_path("setpriv").is_none() {
            bail!(
                "running as root, PostgreSQL must run as another user: install setpriv (util-linux)"
            );
        }
        for name in ["postgres", "nobody"] {
            let id = |flag: &str| {
                run_checked(Command::new("id").args([flag, name]), COMMAND_TIMEOUT)
                    .ok()
                    .and_then(|n| n.parse::<u32>().ok())
            };
            if let (Some(uid), Some(gid)) = (id("-u"), id("-g")) {
                return Ok(RunAs {
                    name: name.to_string(),
                    uid_gid: Some((uid, gid)),
                });
            }
        }
        bail!(
            "running as root, PostgreSQL must run as another user, and neither `postgres` nor `nobody` exists"
        )
    }

    /// `program` to be run as this user, in `dir`, with a plain C locale.
    fn command(&self, program: &Path, dir: &Path) -> Command {
        let mut cmd = match self.uid_gid {
            None => Command::new(program),
            Some(_) => {
                let mut cmd = Command::new("setpriv");
                cmd.args(self.setpriv_args()).arg(program);
                cmd
            }
        };
        cmd.current_dir(dir).env("LC_ALL", "C");
        cmd
    }

    fn setpriv_args(&self) -> Vec<OsString> {
        match self.uid_gid {
            None => Vec::new(),
            Some((uid, gid)) => vec![
                format!("--reuid={uid}").into(),
                format!("--regid={gid}").into(),
                "--clear-groups".into(),
                "--".into(),
            ],
        }
    }
}

/// Where the temporary directories go: `$TMPDIR`, except as root (the unprivileged user must
/// reach it) or when its path is too long for a Unix socket's name (108 bytes).
fn temp_base(user: &RunAs) -> PathBuf {
    let tmp = env::temp_dir();
    if user.uid_gid.is_some() || tmp.as_os_str().len() > 60 {
        PathBuf::from("/tmp")
    } else {
        tmp
    }
}

struct Watchdog {
    child: std::process::Child,
    stdin: Option<ChildStdin>,
}

/// A shell that waits for end-of-file on its stdin, then stops the server in `dir` and deletes
/// `dir`. It has a process group of its own, so a Ctrl-C that stops the tests does not stop it.
fn spawn_watchdog(dir: &Path, bin: &Path, user: &RunAs) -> Result<Watchdog> {
    const SCRIPT: &str = r#"trap '' INT HUP
dir=$1; shift
while read -r _line; do :; done
if [ -f "$dir/data/postmaster.pid" ]; then "$@" >/dev/null 2>&1; fi
rm -rf -- "$dir""#;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("flotilla-pg-watchdog")
        .arg(dir)
        .args(stop_command(dir, bin, user))
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("starting the PostgreSQL watchdog (sh)")?;
    let stdin = child.stdin.take();
    Ok(Watchdog { child, stdin })
}

/// `[setpriv …] pg_ctl stop -m immediate` for the server in `dir`.
fn stop_command(dir: &Path, bin: &Path, user: &RunAs) -> Vec<OsString> {
    let mut argv = Vec::new();
    if user.uid_gid.is_some() {
        argv.push("setpriv".into());
        argv.extend(user.setpriv_args());
    }
    argv.push(bin.join("pg_ctl").into());
    argv.extend(["stop", "--mode=immediate", "--wait", "--pgdata"].map(OsString::from));
    argv.push(dir.join("data").into());
    argv
}

/// Removes directories of ours in `base` whose process is gone (killed so hard its watchdog
/// died too), stopping any server still running in them first.
fn sweep_stale_dirs(base: &Path, bin: &Path, user: &RunAs) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner_pid(&name) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = entry.path();
        // Only directories this user (or the user the servers run as) made: on a shared /tmp,
        // another user's directory, and a postmaster.pid planted in it, are not ours to act on.
        let euid = fs::metadata("/proc/self").map(|m| m.uid()).ok();
        let runs_as = user.uid_gid.map(|(uid, _)| uid);
        let owner = fs::symlink_metadata(&dir).map(|m| m.uid()).ok();
        if owner.is_none() || (owner != euid && owner != runs_as) {
            continue;
        }
        if dir.join("data/postmaster.pid").exists() {
            let argv = stop_command(&dir, bin, user);
            let _ = run_with_deadline(
                Command::new(&argv[0]).args(&argv[1..]).current_dir("/"),
                COMMAND_TIMEOUT,
            );
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

/// The process id in a directory name `flotilla-pg-<pid>-<random>`.
fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(DIR_PREFIX)?
        .split_once('-')?
        .0
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically_and_the_highest_complete_directory_wins() {
        assert_eq!(parse_version("15"), Some((15, 0)));
        assert_eq!(parse_version("9.6"), Some((9, 6)));
        assert_eq!(parse_version("main"), None);
        let dirs = vec![
            ((9, 6), PathBuf::from("/pg/9.6")),
            ((17, 0), PathBuf::from("/pg/17")),
            ((16, 0), PathBuf::from("/pg/16")),
            ((10, 0), PathBuf::from("/pg/10")),
        ];
        assert_eq!(
            highest_complete(dirs.clone(), |_| true),
            Some(PathBuf::from("/pg/17"))
        );
        // 17 lacks a binary (e.g. only the client package): the next one down.
        assert_eq!(
            highest_complete(dirs, |dir| !dir.ends_with("17")),
            Some(PathBuf::from("/pg/16"))
        );
        assert_eq!(highest_complete(Vec::new(), |_| true), None);
    }

    #[test]
    fn without_binaries_the_error_names_the_package_to_install() {
        let empty = tempfile::tempdir().unwrap();
        // A versioned directory holding only the client (no initdb): not enough.
        fs::create_dir_all(empty.path().join("16/bin")).unwrap();
        let error = bin_dir_in(None, &[(empty.path(), "")]).unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("apt-get install postgresql"), "{message}");
        assert!(message.contains("FLOTILLA_TEST_POSTGRES"), "{message}");
    }

    #[test]
    fn versioned_directories_are_found_under_their_root() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        for version in ["13", "16"] {
            let bin = root.path().join(version).join("bin");
            fs::create_dir_all(&bin).unwrap();
            for tool in ["initdb", "pg_ctl", "postgres"] {
                fs::write(bin.join(tool), "#!/bin/sh\n").unwrap();
                fs::set_permissions(bin.join(tool), fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        let found = bin_dir_in(None, &[(root.path(), "")]).unwrap();
        assert_eq!(found, root.path().join("16/bin"));
        // initdb on PATH wins, by its real directory.
        let link = root.path().join("initdb-link");
        std::os::unix::fs::symlink(root.path().join("13/bin/initdb"), &link).unwrap();
        let found = bin_dir_in(Some(link), &[(root.path(), "")]).unwrap();
        assert_eq!(found, fs::canonicalize(root.path().join("13/bin")).unwrap());
    }

    #[test]
    fn directory_names_carry_the_owning_process() {
        assert_eq!(owner_pid("flotilla-pg-4242-AbC12x"), Some(4242));
        assert_eq!(owner_pid("flotilla-pg-x-AbC12x"), None);
        assert_eq!(owner_pid("something-else-4242-AbC"), None);
    }
}
