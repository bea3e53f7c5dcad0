//! Serving HTTP: the accept loop on hyper, per-connection timeouts, the connection cap (which
//! closes the connections that matter least first), graceful drain with a deadline, bounded
//! request heads answered in JSON, and the open-files limit.
//!
//! Why not `axum::serve`: it has no header-read timeout, no idle timeout and no cap, so silent
//! TCP connections from nobody could hold every file descriptor until `/healthz` and agent syncs
//! timed out, and a graceful stop waited for slow clients without end.
//!
//! The rules, in the order a connection meets them:
//! - *Cap.* At most `max_connections` are open. When a new one arrives at the cap, the oldest
//!   connection that has not completed a request head yet is closed to make room (silent and
//!   slow-header connections go first), else the connection idle the longest; when every
//!   connection is busy, the new one is closed at once. Agents keep few connections and use
//!   them, so a flood of hostile connections evicts itself, not them.
//! - *Header timeout.* A connection that has not completed its first request head within
//!   `header_timeout` is closed (HTTP/1 and HTTP/2 alike, including connections that never sent
//!   a byte). On HTTP/1 hyper also applies it to every later request head, so an HTTP/1
//!   connection waiting for its next request is closed after it too.
//! - *Idle timeout.* A connection with no request in flight for `idle_timeout` is shut down
//!   gracefully (HTTP/2: GOAWAY, then closed); HTTP/2 peers that stop answering keep-alive pings
//!   are closed by hyper.
//! - *Drain.* On shutdown the listener closes, connections that never completed a request are
//!   dropped at once, the others are shut down gracefully, and whatever is still open at the
//!   drain deadline is closed.

use std::{
    collections::{BTreeMap, BTreeSet},
    convert::Infallible,
    io::IoSlice,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    http::{HeaderValue, Request, Response, StatusCode, header},
};
use flotilla_api::ErrorBody;
use hyper::body::{Body as _, Bytes, Frame, Incoming, SizeHint};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use parking_lot::Mutex;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Notify, watch},
    task::JoinHandle,
    time::Instant,
};
use tower::ServiceExt;

/// How connections are limited; every field has a server flag.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// Most connections open at once; `None` derives it from the open-files limit (see
    /// [`default_max_connections`]).
    pub max_connections: Option<usize>,
    /// A connection must complete its first request head within this long (HTTP/1: every
    /// request head, and the wait for it).
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is shut down gracefully.
    pub idle_timeout: Duration,
    /// A request body must arrive in full within this long of its head; past it the body
    /// fails and the request ends (a trickled body would keep a request in flight, which the
    /// cap never closes).
    pub body_timeout: Duration,
    /// How long a graceful stop may take in all: draining connections, then writing soft state
    /// and releasing the lease. 25 s fits Kubernetes' default 30 s grace period.
    pub shutdown_timeout: Duration,
}

impl Default for ConnectionSettings {
    fn default() -> ConnectionSettings {
        ConnectionSettings {
            max_connections: None,
            // Generous for any real client on a slow link (a request head is a few hundred
            // bytes), short enough that a flood of silent connections turns over quickly.
            header_timeout: Duration::from_secs(10),
            // Agents sync every 30 s by default; a minute keeps a busy HTTP/2 connection (the
            // simulator's) open between bursts without holding forgotten ones for long.
            idle_timeout: Duration::from_secs(60),
            // The largest accepted body (4 MiB) at 70 KB/s.
            body_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(25),
        }
    }
}

/// File descriptors kept back from connections: the store (SQLite's database, WAL and shared
/// memory; PostgreSQL's pool), git and renderer child processes (three pipes each), scratch
/// files, the runtime's epoll and eventfd, and logs. Tens in practice; 256 leaves room.
pub const RESERVED_FDS: u64 = 256;

/// Longest request target (path and query) answered normally; longer ones get a JSON 414. The
/// longest real ones are list calls with a label selector, a few hundred bytes; 16 KiB is
/// nginx's ceiling twice over. (hyper itself refuses targets over 64 KiB; see
/// [`JsonHeadErrors`].)
pub const MAX_URI_BYTES: usize = 16 << 10;

/// Most header bytes (names and values) of one request answered normally; more gets a JSON 431.
/// Our clients send a few hundred bytes; 32 KiB is well past any proxy's additions.
pub const MAX_HEADER_BYTES: usize = 32 << 10;

/// hyper's HTTP/1 read buffer ceiling per connection, which bounds a request head: it must hold
/// the longest target hyper accepts (64 KiB) plus headers, and it bounds what a slow-header
/// client can make the server hold per connection (hyper's default is 400 KiB).
const HTTP1_MAX_BUF_BYTES: usize = 96 << 10;

/// HTTP/2 header list ceiling, the same bound as HTTP/1's head.
const HTTP2_MAX_HEADER_LIST_BYTES: u32 = 96 << 10;

/// HTTP/2 keep-alive ping interval and how long a ping may go unanswered: a peer that vanished
/// without a FIN (a NAT dropped it, a node died) is found within 40 s.
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(20);
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Pause after a failed accept (out of file descriptors, mostly) before the next one, so the
/// loop does not spin while the cause lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Longest the accept loop waits at the cap for an evicted connection's descriptor to be freed
/// (its task ends at its next poll, microseconds): past it the new connection is refused.
const EVICTION_WAIT: Duration = Duration::from_millis(100);

/// At most one "connection cap reached" warning per this long: under a flood it would be one
/// line per connection.
const CAP_WARNING_EVERY: Duration = Duration::from_secs(10);

/// Raises this process's soft open-files limit to its hard limit and returns the soft limit in
/// force afterwards (`None` where there is no such limit). A server holds a descriptor per
/// connection, and systemd's default soft limit of 1,024 is reached by a thousand idle sockets.
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        if limit.current != limit.maximum {
            let raised = rustix::process::Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => {
                    tracing::debug!(from = ?limit.current, to = ?limit.maximum, "raised the open-files limit")
                }
                Err(error) => {
                    tracing::warn!(%error, soft = ?limit.current, hard = ?limit.maximum, "could not raise the open-files limit")
                }
            }
        }
        getrlimit(Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The connection cap for an open-files limit: everything but [`RESERVED_FDS`], or half of a
/// limit too small to spare them. No limit reported: 65,536.
pub fn default_max_connections(fd_limit: Option<u64>) -> usize {
    let connections = match fd_limit {
        Some(limit) if limit >= 2 * RESERVED_FDS => limit - RESERVED_FDS,
        Some(limit) => limit / 2,
        None => 65_536,
    };
    usize::try_from(connections).unwrap_or(usize::MAX).max(1)
}

/// The accept loop and its connections.
pub struct Serving {
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
    registry: Arc<Registry>,
}

impl Serving {
    /// Starts accepting on `listener`, serving `app` on every connection.
    pub fn start(
        listener: TcpListener,
        app: Router,
        settings: &ConnectionSettings,
        max_connections: usize,
    ) -> Serving {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(settings.header_timeout)
            .max_buf_size(HTTP1_MAX_BUF_BYTES)
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(HTTP2_PING_INTERVAL)
            .keep_alive_timeout(HTTP2_PING_TIMEOUT)
            .max_header_list_size(HTTP2_MAX_HEADER_LIST_BYTES);
        let (stop, stop_rx) = watch::channel(false);
        let registry = Arc::new(Registry::default());
        let accept = tokio::spawn(accept_loop(AcceptLoop {
            listener,
            app,
            builder,
            registry: registry.clone(),
            stop: stop_rx,
            max_connections: max_connections.max(1),
            header_timeout: settings.header_timeout,
            idle_timeout: settings.idle_timeout,
            body_timeout: settings.body_timeout,
        }));
        Serving {
            stop,
            accept,
            registry,
        }
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.registry.len()
    }

    /// Stops accepting, closes connections that never completed a request, shuts the others
    /// down gracefully and waits for them until `deadline`; whatever is still open then is
    /// closed. Returns how many were closed at the deadline.
    pub async fn drain(self, deadline: Instant) -> usize {
        let _ = self.stop.send(true);
        if let Err(error) = self.accept.await {
            tracing::warn!(%error, "the accept loop ended abnormally");
        }
        if tokio::time::timeout_at(deadline, self.registry.wait_empty())
            .await
            .is_ok()
        {
            return 0;
        }
        let left = self.registry.close_all();
        tracing::warn!(
            connections = left,
            "closed connections still open at the drain deadline"
        );
        left
    }

    /// Stops at once: no more accepts, every connection closed.
    pub fn abort(self) {
        self.accept.abort();
        self.registry.close_all();
    }
}

/// One connection as the cap and the timers see it.
#[derive(Default)]
struct Tracked {
    /// Set when the first request head completed (the request reached the service).
    requested: AtomicBool,
    /// Requests whose response is not produced yet.
    in_flight: AtomicUsize,
    /// When a request last started or ended, in milliseconds since the registry's epoch.
    last_active_millis: AtomicU64,
    /// Close now (evicted at the cap, or past the drain deadline).
    close: Notify,
}

/// Every open connection, oldest first.
struct Registry {
    epoch: Instant,
    next_id: AtomicU64,
    inner: Mutex<RegistryInner>,
    /// Connection tasks alive, i.e. descriptors held: the open connections and those told to
    /// close that have not dropped their socket yet. The cap counts these.
    live: AtomicUsize,
    /// Woken when a connection task ends.
    ended: Notify,
    /// Woken when the last connection goes.
    emptied: Notify,
    last_cap_warning: Mutex<Option<Instant>>,
}

#[derive(Default)]
struct RegistryInner {
    open: BTreeMap<u64, Arc<Tracked>>,
    /// The subset that has not completed a request head: the first to close at the cap.
    unrequested: BTreeSet<u64>,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry {
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            inner: Mutex::new(RegistryInner::default()),
            live: AtomicUsize::new(0),
            ended: Notify::new(),
            emptied: Notify::new(),
            last_cap_warning: Mutex::new(None),
        }
    }
}

impl Registry {
    fn len(&self) -> usize {
        self.inner.lock().open.len()
    }

    fn now_millis(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Waits until fewer than `max` connection tasks are alive.
    async fn wait_live_below(&self, max: usize) {
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.live() < max {
                return;
            }
            ended.await;
        }
    }

    fn insert(&self) -> (u64, Arc<Tracked>) {
        self.live.fetch_add(1, Ordering::AcqRel);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let tracked = Arc::new(Tracked::default());
        tracked
            .last_active_millis
            .store(self.now_millis(), Ordering::Relaxed);
        let mut inner = self.inner.lock();
        inner.open.insert(id, tracked.clone());
        inner.unrequested.insert(id);
        (id, tracked)
    }

    /// A connection task ends (its socket is closed).
    fn remove(&self, id: u64) {
        let mut inner = self.inner.lock();
        inner.open.remove(&id);
        inner.unrequested.remove(&id);
        if inner.open.is_empty() {
            self.emptied.notify_waiters();
        }
        drop(inner);
        self.live.fetch_sub(1, Ordering::AcqRel);
        self.ended.notify_waiters();
    }

    fn mark_requested(&self, id: u64) {
        self.inner.lock().unrequested.remove(&id);
    }

    /// Makes room for one connection: closes the oldest that has not completed a request head,
    /// else the one idle the longest. False when every connection is busy.
    fn evict_one(&self) -> bool {
        let mut inner = self.inner.lock();
        let victim = match inner.unrequested.pop_first() {
            Some(id) => Some(id),
            None => inner
                .open
                .iter()
                .filter(|(_, tracked)| tracked.in_flight.load(Ordering::Acquire) == 0)
                .min_by_key(|(_, tracked)| tracked.last_active_millis.load(Ordering::Relaxed))
                .map(|(&id, _)| id),
        };
        let Some(id) = victim else {
            return false;
        };
        if let Some(tracked) = inner.open.remove(&id) {
            tracked.close.notify_one();
        }
        true
    }

    /// Closes every connection; returns how many there were.
    fn close_all(&self) -> usize {
        let mut inner = self.inner.lock();
        let open = std::mem::take(&mut inner.open);
        inner.unrequested.clear();
        for tracked in open.values() {
            tracked.close.notify_one();
        }
        self.emptied.notify_waiters();
        open.len()
    }

    async fn wait_empty(&self) {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            emptied.as_mut().enable();
            if self.len() == 0 {
                return;
            }
            emptied.await;
        }
    }

    fn warn_at_cap(&self, max_connections: usize, evicted: bool) {
        let mut last = self.last_cap_warning.lock();
        if last.is_some_and(|at| at.elapsed() < CAP_WARNING_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        tracing::warn!(
            max_connections,
            evicted,
            "connection cap reached: closing the oldest connection without a request (or idle the longest), or refusing the new one when all are busy (raise --max-connections or the open-files limit if this is real load)"
        );
    }
}

/// Marks a request begun on its connection; ends it when dropped (the response is produced or
/// the request abandoned).
struct InFlight {
    tracked: Arc<Tracked>,
    registry: Arc<Registry>,
}

impl InFlight {
    fn begin(id: u64, tracked: &Arc<Tracked>, registry: &Arc<Registry>) -> InFlight {
        if !tracked.requested.swap(true, Ordering::AcqRel) {
            registry.mark_requested(id);
        }
        tracked.in_flight.fetch_add(1, Ordering::AcqRel);
        tracked
            .last_active_millis
            .store(registry.now_millis(), Ordering::Relaxed);
        InFlight {
            tracked: tracked.clone(),
            registry: registry.clone(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.tracked
            .last_active_millis
            .store(self.registry.now_millis(), Ordering::Relaxed);
        self.tracked.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

struct AcceptLoop {
    listener: TcpListener,
    app: Router,
    builder: auto::Builder<TokioExecutor>,
    registry: Arc<Registry>,
    stop: watch::Receiver<bool>,
    max_connections: usize,
    header_timeout: Duration,
    idle_timeout: Duration,
    body_timeout: Duration,
}

async fn accept_loop(mut accept: AcceptLoop) {
    loop {
        let stream = tokio::select! {
            biased;
            () = stopped(&mut accept.stop) => return,
            accepted = accept.listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // Out of descriptors despite the cap (other files), or a connection reset
                    // before it was accepted: make room and pause rather than spin.
                    tracing::warn!(%error, "accept failed");
                    accept.registry.evict_one();
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let registry = &accept.registry;
        if registry.live() >= accept.max_connections {
            // Connections already told to close make room as their tasks end; otherwise tell one.
            let closing = registry.live() > registry.len();
            let room_coming = closing || registry.evict_one();
            registry.warn_at_cap(accept.max_connections, room_coming);
            // The cap is on descriptors: wait for one to be freed, not just for an entry to go.
            let room = room_coming
                && tokio::time::timeout(
                    EVICTION_WAIT,
                    registry.wait_live_below(accept.max_connections),
                )
                .await
                .is_ok();
            if !room {
                // Every connection is busy serving: refuse this one at once rather than queue.
                drop(stream);
                continue;
            }
        }
        // Small replies must not wait for Nagle's algorithm (a 204 would sit for the peer's
        // delayed ACK, ~40 ms on Linux).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let (id, tracked) = accept.registry.insert();
        tokio::spawn(serve_connection(ConnectionTask {
            stream,
            app: accept.app.clone(),
            builder: accept.builder.clone(),
            registry: accept.registry.clone(),
            stop: accept.stop.clone(),
            id,
            tracked,
            header_timeout: accept.header_timeout,
            idle_timeout: accept.idle_timeout,
            body_timeout: accept.body_timeout,
        }));
    }
}

struct ConnectionTask {
    stream: TcpStream,
    app: Router,
    builder: auto::Builder<TokioExecutor>,
    registry: Arc<Registry>,
    stop: watch::Receiver<bool>,
    id: u64,
    tracked: Arc<Tracked>,
    header_timeout: Duration,
    idle_timeout: Duration,
    body_timeout: Duration,
}

async fn serve_connection(task: ConnectionTask) {
    let ConnectionTask {
        stream,
        app,
        builder,
        registry,
        mut stop,
        id,
        tracked,
        header_timeout,
        idle_timeout,
        body_timeout,
    } = task;
    let service = {
        let (tracked, registry) = (tracked.clone(), registry.clone());
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let in_flight = InFlight::begin(id, &tracked, &registry);
            let app = app.clone();
            async move {
                let response = match refuse_oversized_head(&request) {
                    Some(refusal) => refusal,
                    None => {
                        let request = request.map(|body| {
                            if body.is_end_stream() {
                                Body::new(body)
                            } else {
                                Body::new(DeadlineBody::new(body, body_timeout))
                            }
                        });
                        app.oneshot(request).await?
                    }
                };
                Ok::<_, Infallible>(InFlightBody::until_sent(response, in_flight))
            }
        })
    };
    let connection = builder.serve_connection(TokioIo::new(JsonHeadErrors::new(stream)), service);
    tokio::pin!(connection);
    let first_request_deadline = tokio::time::sleep(header_timeout);
    tokio::pin!(first_request_deadline);
    let idle_check = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle_check);
    // Once an idle connection is shut down gracefully it gets one more idle period to finish.
    let grace_over = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(grace_over);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                break;
            }
            () = tracked.close.notified() => {
                tracing::debug!("connection closed to make room (or at the drain deadline)");
                break;
            }
            () = &mut first_request_deadline, if !tracked.requested.load(Ordering::Acquire) => {
                // A guard is checked when the select starts waiting: the first request may have
                // come in since.
                if tracked.requested.load(Ordering::Acquire) {
                    continue;
                }
                tracing::debug!("connection closed: no complete request head within the header timeout");
                break;
            }
            () = &mut idle_check, if !shutting_down => {
                let last_active = Duration::from_millis(tracked.last_active_millis.load(Ordering::Relaxed));
                let idle_since = registry.epoch + last_active;
                if tracked.in_flight.load(Ordering::Acquire) > 0 {
                    idle_check.as_mut().reset(Instant::now() + idle_timeout);
                } else if idle_since + idle_timeout > Instant::now() {
                    idle_check.as_mut().reset(idle_since + idle_timeout);
                } else {
                    tracing::debug!("closing an idle connection");
                    connection.as_mut().graceful_shutdown();
                    shutting_down = true;
                    grace_over.as_mut().reset(Instant::now() + idle_timeout);
                }
            }
            () = &mut grace_over, if shutting_down => break,
            () = stopped(&mut stop), if !shutting_down => {
                if !tracked.requested.load(Ordering::Acquire) {
                    break;
                }
                connection.as_mut().graceful_shutdown();
                shutting_down = true;
            }
        }
    }
    registry.remove(id);
}

/// A request body that fails once its deadline passes before it has arrived in full. The timer
/// is armed only when the body first has to be waited for: an agent's sync body arrives with
/// its head, and then no timer is ever registered (this runs on every sync).
struct DeadlineBody {
    inner: Incoming,
    timeout: Duration,
    /// When the body's head arrived: the deadline counts from here.
    started: tokio::time::Instant,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration) -> DeadlineBody {
        DeadlineBody {
            inner,
            timeout,
            started: tokio::time::Instant::now(),
            deadline: None,
        }
    }
}

/// A streamed response body (a watch) that keeps its request counted in flight until it ends,
/// not just until its head was sent: otherwise the idle timeout and the eviction at the
/// connection cap would take a connection that is busy streaming.
struct InFlightBody {
    inner: Body,
    _in_flight: InFlight,
}

impl InFlightBody {
    /// The response as it goes out: a body of known length (every answer but a stream) ends
    /// the request's time in flight now, with no wrapper.
    fn until_sent(response: Response<Body>, in_flight: InFlight) -> Response<Body> {
        if response.body().size_hint().exact().is_some() {
            drop(in_flight);
            return response;
        }
        response.map(|inner| {
            Body::new(InFlightBody {
                inner,
                _in_flight: in_flight,
            })
        })
    }
}

impl hyper::body::Body for InFlightBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in full within {} of its head", humantime::format_duration(*.0))]
struct BodyTimedOut(Duration);

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let at = self.started + self.timeout;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(BodyTimedOut(self.timeout).into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Resolves once a stop is asked for (or the sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// A JSON refusal for a request head over our bounds, before it reaches the routes.
fn refuse_oversized_head<B>(request: &Request<B>) -> Option<Response<Body>> {
    let uri = request.uri();
    let uri_bytes = uri
        .path_and_query()
        .map_or(0, |target| target.as_str().len())
        + uri
            .authority()
            .map_or(0, |authority| authority.as_str().len());
    if uri_bytes > MAX_URI_BYTES {
        return Some(json_error(
            StatusCode::URI_TOO_LONG,
            "URITooLong",
            format!(
                "the request target is {uri_bytes} bytes; the most this server accepts is {MAX_URI_BYTES}; send long selectors or lists in fewer, shorter requests"
            ),
        ));
    }
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Some(json_error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "RequestHeaderFieldsTooLarge",
            format!(
                "the request headers are {header_bytes} bytes; the most this server accepts is {MAX_HEADER_BYTES}"
            ),
        ));
    }
    None
}

/// A response in the project's error shape ([`ErrorBody`]).
fn json_error(status: StatusCode, reason: &str, message: String) -> Response<Body> {
    let body = ErrorBody {
        code: status.as_u16(),
        reason: reason.to_string(),
        message,
        details: None,
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// hyper answers some request heads itself, before any service sees them, with an empty body:
/// a target over 64 KiB (414; its limit is fixed), a head over the read buffer (431), a
/// malformed request line or header (400). This socket wrapper rewrites exactly those
/// responses into the project's JSON error shape, so every error a client gets is JSON.
///
/// How it knows them: hyper writes such a response as one head that starts with the status
/// line, `connection: close` and `content-length: 0`, at the start of a write, and then closes
/// the connection. Nothing the routes answer looks like that (their 4xx carry a JSON body), and
/// no body the server sends can contain those lines (JSON and YAML escape a bare CR).
struct JsonHeadErrors<T> {
    inner: T,
    /// A replacement being written, and how much of it is out.
    pending: Option<(Vec<u8>, usize)>,
}

/// The responses hyper writes itself, by the start of their head.
const HYPER_HEAD_ERRORS: [(&[u8], StatusCode); 3] = [
    (
        b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\n",
        StatusCode::URI_TOO_LONG,
    ),
    (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    ),
    (
        b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n",
        StatusCode::BAD_REQUEST,
    ),
];

/// What to say instead of one of hyper's empty error responses.
fn hyper_head_error(status: StatusCode) -> ErrorBody {
    let (reason, message) = match status {
        StatusCode::URI_TOO_LONG => (
            "URITooLong",
            format!(
                "the request target is over 65,534 bytes; the most this server accepts is {MAX_URI_BYTES}; send long selectors or lists in fewer, shorter requests"
            ),
        ),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            "RequestHeaderFieldsTooLarge",
            format!(
                "the request head is over {HTTP1_MAX_BUF_BYTES} bytes; the most this server accepts in headers is {MAX_HEADER_BYTES}"
            ),
        ),
        _ => (
            "BadRequest",
            "the request head is not valid HTTP/1.1 (a malformed request line or header)"
                .to_string(),
        ),
    };
    ErrorBody {
        code: status.as_u16(),
        reason: reason.to_string(),
        message,
        details: None,
    }
}

impl<T> JsonHeadErrors<T> {
    fn new(inner: T) -> JsonHeadErrors<T> {
        JsonHeadErrors {
            inner,
            pending: None,
        }
    }
}

/// For a write that is one of hyper's own error heads: how many bytes of it the head takes, and
/// the JSON response to send instead.
fn json_for_hyper_head(buf: &[u8]) -> Option<(usize, Vec<u8>)> {
    let &(_, status) = HYPER_HEAD_ERRORS
        .iter()
        .find(|(start, _)| buf.starts_with(start))?;
    let head_len = buf.windows(4).position(|window| window == b"\r\n\r\n")? + 4;
    let body = serde_json::to_vec(&hyper_head_error(status)).ok()?;
    let mut response = format!(
        "HTTP/1.1 {} {}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default(),
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    Some((head_len, response))
}

impl<T: AsyncWrite + Unpin> JsonHeadErrors<T> {
    /// Writes out a queued replacement; ready when none is left.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            if *written == bytes.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Queues the JSON replacement if `buf` is one of hyper's error heads; the bytes of `buf`
    /// it stands for.
    fn replace(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Option<std::io::Result<usize>> {
        let (head_len, replacement) = json_for_hyper_head(buf)?;
        self.pending = Some((replacement, 0));
        // Start writing now; the rest goes out on the next write, flush or shutdown.
        match self.poll_pending(cx) {
            Poll::Ready(Err(error)) => Some(Err(error)),
            _ => Some(Ok(head_len)),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonHeadErrors<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonHeadErrors<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if let Some(result) = this.replace(cx, buf) {
            return Poll::Ready(result);
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if let Some(first) = bufs.iter().find(|buf| !buf.is_empty())
            && let Some(result) = this.replace(cx, first)
        {
            return Poll::Ready(result);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_cap_leaves_descriptors_for_the_store_and_children() {
        assert_eq!(default_max_connections(Some(1024)), 1024 - 256);
        assert_eq!(default_max_connections(Some(1 << 20)), (1 << 20) - 256);
        // Too small to spare the reserve: half.
        assert_eq!(default_max_connections(Some(256)), 128);
        assert_eq!(default_max_connections(Some(1)), 1);
    }

    #[test]
    fn eviction_takes_connections_without_a_request_first_then_the_longest_idle() {
        let registry = Arc::new(Registry::default());
        let (busy_id, busy) = registry.insert();
        let (idle_id, idle) = registry.insert();
        let (silent_id, _silent) = registry.insert();
        let _busy_request = InFlight::begin(busy_id, &busy, &registry);
        drop(InFlight::begin(idle_id, &idle, &registry));
        let open = |id| registry.inner.lock().open.contains_key(&id);
        assert!(registry.evict_one());
        assert!(!open(silent_id), "the silent connection went first");
        assert!(open(idle_id) && open(busy_id));
        assert!(registry.evict_one());
        assert!(!open(idle_id), "then the idle one");
        assert!(open(busy_id));
        assert!(
            !registry.evict_one(),
            "a connection serving a request is never evicted"
        );
    }

    #[test]
    fn oversized_targets_and_heads_are_refused_in_json() {
        let long = format!(
            "/api/v1/clusters?labelSelector={}",
            "a".repeat(MAX_URI_BYTES)
        );
        let request = Request::builder().uri(long).body(()).unwrap();
        let refusal = refuse_oversized_head(&request).expect("refused");
        assert_eq!(refusal.status(), StatusCode::URI_TOO_LONG);
        let mut request = Request::builder().uri("/healthz").body(()).unwrap();
        assert!(refuse_oversized_head(&request).is_none());
        request.headers_mut().insert(
            "x-big",
            HeaderValue::from_str(&"b".repeat(MAX_HEADER_BYTES)).unwrap(),
        );
        let refusal = refuse_oversized_head(&request).expect("refused");
        assert_eq!(
            refusal.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }

    #[test]
    fn hyper_error_heads_become_json_and_nothing_else_does() {
        let hyper_414 = b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\ndate: Mon, 07 Dec 2026 14:10:34 GMT\r\n\r\n";
        let (consumed, replacement) = json_for_hyper_head(hyper_414).expect("rewritten");
        assert_eq!(consumed, hyper_414.len());
        let text = String::from_utf8(replacement).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let error: ErrorBody = serde_json::from_str(body).unwrap();
        assert_eq!((error.code, error.reason.as_str()), (414, "URITooLong"));
        // The routes' own answers pass untouched, including their JSON 414s.
        for untouched in [
            &b"HTTP/1.1 414 URI Too Long\r\ncontent-type: application/json\r\ncontent-length: 176\r\n\r\n"[..],
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"{\"code\":400}",
        ] {
            assert!(json_for_hyper_head(untouched).is_none());
        }
    }
}
