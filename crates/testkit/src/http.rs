//! HTTP servers on 127.0.0.1, each on its own tokio runtime thread so callers need not be async:
//! smart HTTP git through the real `git http-backend` CGI, and a static file server.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http_body_util::BodyExt as _;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;

use crate::git::{GitRepoFixture, prepare_git_home, served_path};

/// How long a server thread gets to come up.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server thread gets to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound on the CGI response header block (git's is a few hundred bytes).
const MAX_CGI_HEADER: usize = 64 * 1024;

/// A tokio runtime on its own thread serving `router` on an already bound listener. Dropping it
/// stops the server: in-flight connections are cancelled and their CGI children killed.
struct ServerThread {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    fn start(name: &str, router: Router) -> Result<Self> {
        // Bound here, before returning: connections queue in the backlog from now on, so the
        // server is reachable as soon as `start` returns.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("building a tokio runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("registering the listener: {e}")));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    // Not a graceful shutdown: a test server has nothing worth draining, and an
                    // idle keep-alive connection must not hold up the test.
                    tokio::select! {
                        result = axum::serve(listener, router).into_future() => {
                            if let Err(e) = result {
                                tracing::error!(%addr, "test HTTP server failed: {e}");
                            }
                        }
                        _ = shutdown_rx => {}
                    }
                });
                // The runtime drops here, cancelling connection tasks (kill_on_drop children).
            })
            .context("spawning the server thread")?;
        let mut server = ServerThread {
            addr,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(())) => Ok(server),
            Ok(Err(e)) => bail!("{e}"),
            Err(_) => {
                // Detach rather than join a thread that did not report in time.
                server.thread.take();
                bail!("the server thread did not start within {START_TIMEOUT:?}")
            }
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            // The runtime stops promptly once told; should it not, detach rather than hang.
            if crate::wait_until(STOP_TIMEOUT, "the server thread to stop", || {
                thread.is_finished()
            })
            .is_ok()
            {
                let _ = thread.join();
            } else {
                tracing::warn!(addr = %self.addr, "test HTTP server did not stop; detached");
            }
        }
    }
}

/// Requests seen by a server: a counter and one line per request.
#[derive(Default)]
struct RequestLog {
    count: AtomicU64,
    lines: Mutex<Vec<String>>,
}

impl RequestLog {
    fn record(&self, line: String) {
        tracing::debug!("{line}");
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Smart HTTP git: every repository under a directory, served by the real `git http-backend`
/// CGI behind a small axum server, optionally behind HTTP Basic authentication. Stopped (and
/// its CGI children killed) when dropped.
pub struct GitHttpServer {
    server: ServerThread,
    state: Arc<GitHttpState>,
    // HOME for the CGI processes; removed after the server thread is gone.
    _dir: TempDir,
}

struct GitHttpState {
    root: PathBuf,
    backend: PathBuf,
    home: PathBuf,
    /// `(user, password)` when Basic authentication is required.
    auth: Option<(String, String)>,
    log: RequestLog,
}

impl GitHttpServer {
    /// Serves every repository under `root` (e.g. [`GitRepoFixture::repos_dir`]) without
    /// authentication.
    pub fn start(root: impl AsRef<Path>) -> Self {
        Self::try_start(root.as_ref(), None)
            .unwrap_or_else(|e| panic!("GitHttpServer::start({}): {e:#}", root.as_ref().display()))
    }

    /// Serves `root`, answering `401` with `WWW-Authenticate: Basic realm="git"` to any request
    /// without exactly these credentials. The CGI sees `REMOTE_USER=user` when they match.
    pub fn start_with_basic_auth(root: impl AsRef<Path>, user: &str, password: &str) -> Self {
        Self::try_start(
            root.as_ref(),
            Some((user.to_string(), password.to_string())),
        )
        .unwrap_or_else(|e| {
            panic!(
                "GitHttpServer::start_with_basic_auth({}): {e:#}",
                root.as_ref().display()
            )
        })
    }

    fn try_start(root: &Path, auth: Option<(String, String)>) -> Result<Self> {
        let root = root
            .canonicalize()
            .with_context(|| format!("{} does not exist", root.display()))?;
        let backend = crate::git::git_program("git-http-backend")?;
        let dir = tempfile::Builder::new()
            .prefix("flotilla-git-http-")
            .tempdir()?;
        let home = dir.path().join("home");
        prepare_git_home(&home)?;
        let state = Arc::new(GitHttpState {
            root,
            backend,
            home,
            auth,
            log: RequestLog::default(),
        });
        let router = Router::new()
            .fallback(git_http_backend)
            .with_state(state.clone());
        let server = ServerThread::start("git-http-server", router)?;
        Ok(Self {
            server,
            state,
            _dir: dir,
        })
    }

    /// `http://127.0.0.1:PORT/repo.git` for a fixture under the served directory (no
    /// credentials in it).
    pub fn url_for(&self, fixture: &GitRepoFixture) -> String {
        format!(
            "http://{}/{}",
            self.server.addr,
            served_path(&self.state.root, fixture)
        )
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Requests received so far, including ones refused for missing credentials.
    pub fn requests(&self) -> u64 {
        self.state.log.count.load(Ordering::SeqCst)
    }

    /// One line per request so far: `METHOD /path?query -> STATUS`, plus any `git
    /// http-backend` stderr.
    pub fn request_log(&self) -> Vec<String> {
        self.state.log.lines()
    }
}

/// The one handler: authentication, then the request as a CGI call to `git http-backend`.
async fn git_http_backend(State(state): State<Arc<GitHttpState>>, request: Request) -> Response {
    state.log.count.fetch_add(1, Ordering::SeqCst);
    let line = format!(
        "{} {}",
        request.method(),
        request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let remote_user = match &state.auth {
        None => None,
        Some((user, password)) => {
            if basic_credentials(request.headers()).as_ref()
                != Some(&(user.clone(), password.clone()))
            {
                state.log.record(format!("{line} -> 401"));
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Basic realm=\"git\"")],
                    "authentication required\n",
                )
                    .into_response();
            }
            Some(user.clone())
        }
    };
    let response = match run_cgi(&state, request, remote_user).await {
        Ok(response) => response,
        Err(e) => {
            state.log.record(format!("{line}: {e:#}"));
            (
                StatusCode::BAD_GATEWAY,
                format!("git http-backend: {e:#}\n"),
            )
                .into_response()
        }
    };
    state
        .log
        .record(format!("{line} -> {}", response.status().as_u16()));
    response
}

/// The `(user, password)` of an `Authorization: Basic …` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Runs `git http-backend` for one request (RFC 3875 CGI): request metadata in the environment,
/// the body streamed to its stdin, its stdout parsed as CGI headers and then streamed back.
async fn run_cgi(
    state: &Arc<GitHttpState>,
    request: Request,
    remote_user: Option<String>,
) -> Result<Response> {
    let (parts, mut body) = request.into_parts();
    let header_str = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };

    let mut cmd = tokio::process::Command::new(&state.backend);
    // A clean environment: the CGI variables plus what git itself needs.
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &state.home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C")
        .env("GIT_PROJECT_ROOT", &state.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("SERVER_SOFTWARE", "flotilla-testkit")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("REQUEST_METHOD", parts.method.as_str())
        // Paths here are plain ASCII repository names, so no percent-decoding is needed.
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""));
    // Without CONTENT_LENGTH (a chunked request body) http-backend reads stdin to EOF.
    for (var, name) in [
        ("CONTENT_TYPE", "content-type"),
        ("CONTENT_LENGTH", "content-length"),
        ("HTTP_GIT_PROTOCOL", "git-protocol"),
        // git gzips large upload-pack requests; http-backend inflates them when told.
        ("HTTP_CONTENT_ENCODING", "content-encoding"),
    ] {
        if let Some(value) = header_str(name) {
            cmd.env(var, value);
        }
    }
    if let Some(user) = remote_user {
        cmd.env("REMOTE_USER", user).env("AUTH_TYPE", "Basic");
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Killed if the request is abandoned or the server stops.
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", state.backend.display()))?;

    // Request body -> stdin, concurrently with reading stdout (the CGI may answer before it
    // has read everything). Dropping stdin at the end is the EOF.
    let mut stdin = child.stdin.take().context("no stdin")?;
    tokio::spawn(async move {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Ok(data) = frame.into_data()
                && stdin.write_all(&data).await.is_err()
            {
                break;
            }
        }
    });
    // Stderr goes to the request log, never left to fill its pipe.
    let mut stderr = child.stderr.take().context("no stderr")?;
    let path = parts.uri.path().to_string();
    let log_state = state.clone();
    tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        if !text.trim().is_empty() {
            log_state
                .log
                .record(format!("{path}: git http-backend stderr: {}", text.trim()));
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().context("no stdout")?);
    // Reap the child once it exits; if the runtime stops first, kill_on_drop ends it.
    tokio::spawn(async move {
        let _ = child.wait().await;
    });

    let (status, headers) = read_cgi_headers(&mut stdout).await?;
    let mut response = Response::new(Body::from_stream(tokio_util::io::ReaderStream::new(stdout)));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

/// Reads a CGI response header block (lines ending in CRLF or LF, up to an empty line):
/// `Status: 404 Not Found` sets the status, every other line is a response header.
async fn read_cgi_headers(
    stdout: &mut (impl tokio::io::AsyncBufRead + Unpin),
) -> Result<(StatusCode, HeaderMap)> {
    let mut status = None;
    let mut headers = HeaderMap::new();
    let mut total = 0;
    loop {
        let mut line = String::new();
        let n = stdout.read_line(&mut line).await?;
        if n == 0 {
            bail!("git http-backend ended before the end of its headers");
        }
        total += n;
        if total > MAX_CGI_HEADER {
            bail!("git http-backend sent more than {MAX_CGI_HEADER} bytes of headers");
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .with_context(|| format!("bad CGI header line {line:?}"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("");
            status = Some(
                code.parse::<u16>()
                    .ok()
                    .and_then(|c| StatusCode::from_u16(c).ok())
                    .with_context(|| format!("bad CGI Status {value:?}"))?,
            );
        } else {
            headers.append(
                HeaderName::from_bytes(name.trim().as_bytes())
                    .with_context(|| format!("bad CGI header name {name:?}"))?,
                HeaderValue::from_str(value)
                    .with_context(|| format!("bad CGI header value {value:?}"))?,
            );
        }
    }
    // RFC 3875: a Location without Status is a redirect; otherwise 200.
    let status = status.unwrap_or(if headers.contains_key(header::LOCATION) {
        StatusCode::FOUND
    } else {
        StatusCode::OK
    });
    Ok((status, headers))
}

/// A directory served over plain HTTP at `http://127.0.0.1:PORT/` (GET and HEAD of files; no
/// listings), e.g. a Helm chart repository made with `helm package` and `helm repo index`.
/// Stopped when dropped.
pub struct HttpFileServer {
    server: ServerThread,
    state: Arc<FileState>,
}

struct FileState {
    root: PathBuf,
    log: RequestLog,
}

impl HttpFileServer {
    /// Serves the files under `root` (read on each request, so files may change after start).
    pub fn start(root: impl AsRef<Path>) -> Self {
        let root = root.as_ref();
        Self::try_start(root)
            .unwrap_or_else(|e| panic!("HttpFileServer::start({}): {e:#}", root.display()))
    }

    fn try_start(root: &Path) -> Result<Self> {
        let root = root
            .canonicalize()
            .with_context(|| format!("{} does not exist", root.display()))?;
        let state = Arc::new(FileState {
            root,
            log: RequestLog::default(),
        });
        // A fallback rather than a route, so every request reaches the handler and is counted.
        let router = Router::new().fallback(serve_file).with_state(state.clone());
        let server = ServerThread::start("http-file-server", router)?;
        Ok(Self { server, state })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.state.log.count.load(Ordering::SeqCst)
    }

    /// One line per request so far: `METHOD /path -> STATUS`.
    pub fn request_log(&self) -> Vec<String> {
        self.state.log.lines()
    }
}

async fn serve_file(State(state): State<Arc<FileState>>, method: Method, uri: Uri) -> Response {
    state.log.count.fetch_add(1, Ordering::SeqCst);
    let response = match file_path(&state.root, uri.path()) {
        _ if method != Method::GET && method != Method::HEAD => {
            StatusCode::METHOD_NOT_ALLOWED.into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
        Some(path) => match tokio::fs::read(&path).await {
            Ok(bytes) => ([(header::CONTENT_TYPE, content_type(&path))], bytes).into_response(),
            Err(_) => StatusCode::NOT_FOUND.into_response(),
        },
    };
    state.log.record(format!(
        "{method} {} -> {}",
        uri.path(),
        response.status().as_u16()
    ));
    response
}

/// `root` joined with the URL path, or None unless every segment is a plain name (so `..` and
/// the like never leave `root`).
fn file_path(root: &Path, url_path: &str) -> Option<PathBuf> {
    let mut path = root.to_path_buf();
    for segment in url_path.trim_start_matches('/').split('/') {
        if segment.is_empty() || segment == "." || segment == ".." || segment.contains('\\') {
            return None;
        }
        path.push(segment);
    }
    Some(path)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => "application/x-yaml",
        Some("json") => "application/json",
        Some("tgz" | "gz") => "application/gzip",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
