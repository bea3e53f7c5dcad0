//! The simulator's orchestration: registration ramp, the timer wheel, a bounded pool of
//! workers making the real HTTP calls, live progress, and the state file.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::Context;
use flotilla_api::{
    ClusterFacts, NodeCounts,
    agent::{
        CONTENT_PATH, DesiredBundle, REGISTER_PATH, RegisterResponse, SYNC_PATH, SyncResponse,
    },
};
use flotilla_core::{
    digest::verify_content,
    failover::{Failover, Outcome, Step, retry_delay_millis},
    protocol::{Call, Reply, classify},
    sync::jittered_millis,
};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use parking_lot::Mutex;
use rand::RngExt;

use crate::{
    agent::{DesiredSets, Outcomes, SimAgent},
    stats::{Snapshot, Stats},
    verdicts::{Verdict, Verdicts, verdict_key},
    wheel::TimerWheel,
};

/// Granularity of the timer wheel: fine enough for sub-second intervals in tests, coarse enough
/// that a million clusters spread over two minutes fill each slot with a few hundred.
const TICK: Duration = Duration::from_millis(50);
/// Regions labels are spread over.
const REGIONS: [&str; 8] = [
    "eu-west",
    "eu-central",
    "eu-north",
    "us-east",
    "us-west",
    "us-central",
    "ap-south",
    "ap-east",
];
const ENVS: [&str; 3] = ["dev", "staging", "prod"];

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// One server URL, or several replicas' comma-separated: clusters start spread over them
    /// and move between them as the agent does (`flotilla_core::failover`).
    pub server: String,
    pub token: String,
    pub clusters: u32,
    pub nodes: u32,
    pub interval: Duration,
    /// Registrations per second while ramping up; 0 for as fast as the server accepts.
    pub register_rate: u32,
    /// Fraction of clusters that go silent now and then and come back.
    pub flap: f64,
    pub fail_rate: f64,
    pub not_ready_rate: f64,
    pub prefix: String,
    pub state_file: Option<PathBuf>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// HTTP/2 connections to spread requests over.
    pub connections: usize,
    /// Show live progress bars.
    pub progress: bool,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            server: "http://127.0.0.1:8080".into(),
            token: String::new(),
            clusters: 100,
            nodes: 3,
            interval: Duration::from_secs(120),
            register_rate: 0,
            flap: 0.0,
            fail_rate: 0.0,
            not_ready_rate: 0.0,
            prefix: "sim-".into(),
            state_file: None,
            concurrency: 256,
            connections: 4,
            progress: true,
        }
    }
}

/// What a run ended with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimSummary {
    pub stats: Snapshot,
    pub elapsed: Duration,
}

struct Shared {
    config: SimConfig,
    /// Each server replica's URLs (`--server URL1,URL2`). Cluster `ordinal` starts on replica
    /// `ordinal % len`, so the fleet spreads evenly over the replicas, and moves between them as
    /// the agent does (`flotilla_core::failover`), see [`call`].
    servers: Vec<ServerUrls>,
    clients: Vec<reqwest::Client>,
    agents: Vec<Mutex<SimAgent>>,
    wheel: Mutex<TimerWheel>,
    stats: Arc<Stats>,
    facts: ClusterFacts,
    /// What bundle deployments come to, judged as the agent judges them (customization
    /// included) once per content and options: each cluster still fetches content over HTTP.
    verdicts: Verdicts,
    /// Identical desired sets, held once.
    sets: DesiredSets,
    outcomes: Outcomes,
}

/// Parsed once: parsing a URL per request was a measurable share of the simulator's CPU.
struct ServerUrls {
    register: reqwest::Url,
    sync: reqwest::Url,
    /// `…/agent/v1/content/`; a digest is pushed as the last path segment.
    content_base: reqwest::Url,
}

impl Shared {
    fn name(&self, ordinal: u32) -> String {
        format!("{}{ordinal:07}", self.config.prefix)
    }

    fn labels(&self, ordinal: u32) -> BTreeMap<String, String> {
        let index = ordinal as usize;
        BTreeMap::from([
            ("region".into(), REGIONS[index % REGIONS.len()].into()),
            (
                "env".into(),
                ENVS[(index / REGIONS.len()) % ENVS.len()].into(),
            ),
            ("store".into(), format!("{ordinal:07}")),
        ])
    }

    fn client(&self, ordinal: u32) -> &reqwest::Client {
        &self.clients[ordinal as usize % self.clients.len()]
    }

    fn schedule(&self, ordinal: u32, delay: Duration) {
        self.wheel.lock().schedule(ordinal, delay);
    }

    fn next_interval(&self) -> Duration {
        Duration::from_millis(jittered_millis(
            self.config.interval.as_millis() as u64,
            10,
            rand::rng().random(),
        ))
    }

    fn flaps(&self, ordinal: u32) -> bool {
        self.config.flap > 0.0
            && (xxhash_rust::xxh3::xxh3_64(&ordinal.to_le_bytes()) % 10_000) as f64 / 1e4
                < self.config.flap
    }
}

/// A running simulated fleet: its workers, timer wheel and ramp run on the current tokio runtime
/// until [`Simulator::stop`].
pub struct Simulator {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    started: Instant,
}

/// Runs the simulated fleet until `stop` resolves; saves the state file on the way out.
pub async fn run(
    config: SimConfig,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<SimSummary> {
    let simulator = Simulator::start(config)?;
    stop.await;
    simulator.stop().await
}

impl Simulator {
    /// Loads the state file (if any), then starts registering and syncing in the background.
    pub fn start(config: SimConfig) -> anyhow::Result<Simulator> {
        Simulator::start_with_stats(config, Arc::new(Stats::default()))
    }

    /// As [`Simulator::start`], counting into `stats` (which a sampler may already be reading).
    pub fn start_with_stats(config: SimConfig, stats: Arc<Stats>) -> anyhow::Result<Simulator> {
        flotilla_client::install_crypto_provider();
        let started = Instant::now();
        let mut agents: Vec<Mutex<SimAgent>> = (0..config.clusters)
            .map(|_| Mutex::new(SimAgent::default()))
            .collect();
        if let Some(path) = &config.state_file {
            load_state(path, &mut agents)?;
        }
        let http2 = config.server.starts_with("http://");
        let clients = (0..config.connections.max(1))
            .map(|_| {
                let builder = reqwest::Client::builder()
                    .timeout(Duration::from_secs(60))
                    .pool_max_idle_per_host(usize::MAX);
                let builder = if http2 {
                    builder.http2_prior_knowledge()
                } else {
                    builder
                };
                builder.build().context("build HTTP client")
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let horizon = config.interval * 5 + Duration::from_secs(60);
        let outcomes = Outcomes {
            fail_rate: config.fail_rate,
            not_ready_rate: config.not_ready_rate,
        };
        let facts = ClusterFacts {
            agent_version: Some(concat!(env!("CARGO_PKG_VERSION"), "-sim").into()),
            kubernetes_version: Some("v1.31.0-sim".into()),
            nodes: Some(NodeCounts {
                total: config.nodes,
                ready: config.nodes,
            }),
            capacity: BTreeMap::from([
                ("cpu".into(), (4 * config.nodes).to_string()),
                ("pods".into(), (110 * config.nodes).to_string()),
            ]),
            sync_interval_seconds: Some(config.interval.as_secs().max(1) as u32),
        };
        let servers = config
            .server
            .split(',')
            .map(|base| base.trim().trim_end_matches('/'))
            .filter(|base| !base.is_empty())
            .map(|base| {
                let url = |path: &str| {
                    reqwest::Url::parse(&format!("{base}{path}"))
                        .with_context(|| format!("server URL {base:?}"))
                };
                Ok(ServerUrls {
                    register: url(REGISTER_PATH)?,
                    sync: url(SYNC_PATH)?,
                    content_base: url(&format!("{CONTENT_PATH}/"))?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!servers.is_empty(), "--server: no server URL given");
        anyhow::ensure!(
            servers.len() <= usize::from(u16::MAX),
            "--server: at most {} server URLs",
            u16::MAX
        );
        for (ordinal, agent) in agents.iter_mut().enumerate() {
            agent.get_mut().replica = (ordinal % servers.len()) as u16;
        }
        let shared = Arc::new(Shared {
            servers,
            clients,
            agents,
            wheel: Mutex::new(TimerWheel::new(TICK, horizon)),
            stats,
            facts,
            verdicts: Verdicts::default(),
            sets: DesiredSets::default(),
            outcomes,
            config,
        });
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let mut tasks = Vec::new();
        for _ in 0..shared.config.concurrency.max(1) {
            let shared = shared.clone();
            let receiver = receiver.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let next = receiver.lock().await.recv().await;
                    let Some(ordinal) = next else { break };
                    step(&shared, ordinal).await;
                }
            }));
        }
        // Clusters already registered (from the state file) start syncing at once, spread over an
        // interval; the rest register at the configured rate.
        {
            let mut wheel = shared.wheel.lock();
            for (ordinal, agent) in shared.agents.iter().enumerate() {
                if agent.lock().credential.is_some() {
                    let spread =
                        rand::rng().random_range(0..=shared.config.interval.as_millis() as u64);
                    wheel.schedule(ordinal as u32, Duration::from_millis(spread));
                }
            }
        }
        let ramp = {
            let shared = shared.clone();
            let sender = sender.clone();
            tokio::spawn(async move {
                let batch_every = Duration::from_millis(10);
                let per_batch = match shared.config.register_rate {
                    0 => u32::MAX,
                    rate => (rate / 100).max(1),
                };
                let mut ticker = tokio::time::interval(batch_every);
                let mut ordinal = 0u32;
                while ordinal < shared.config.clusters {
                    ticker.tick().await;
                    let end = ordinal
                        .saturating_add(per_batch)
                        .min(shared.config.clusters);
                    for next in ordinal..end {
                        if shared.agents[next as usize].lock().credential.is_none() {
                            let _ = sender.send(next);
                        }
                    }
                    ordinal = end;
                }
            })
        };
        let ticker = {
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(TICK);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                loop {
                    ticker.tick().await;
                    let due = shared.wheel.lock().advance();
                    for ordinal in due {
                        if sender.send(ordinal).is_err() {
                            return;
                        }
                    }
                }
            })
        };
        tasks.push(ramp);
        tasks.push(ticker);
        if shared.config.progress {
            tasks.push(spawn_progress(shared.clone()));
        }
        Ok(Simulator {
            shared,
            tasks,
            started,
        })
    }

    /// The live counters, for progress displays and the bench's sampler.
    pub fn stats(&self) -> Arc<Stats> {
        self.shared.stats.clone()
    }

    /// Stops every worker, saves the state file and returns the final counters.
    pub async fn stop(self) -> anyhow::Result<SimSummary> {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
        if let Some(path) = &self.shared.config.state_file {
            save_state(path, &self.shared.agents)?;
        }
        Ok(SimSummary {
            stats: self.shared.stats.snapshot(false),
            elapsed: self.started.elapsed(),
        })
    }
}

/// One turn of one simulated agent: register, or sync (and apply what changed).
async fn step(shared: &Shared, ordinal: u32) {
    let credential = shared.agents[ordinal as usize].lock().credential.clone();
    match credential {
        None => register(shared, ordinal).await,
        Some(credential) => sync(shared, ordinal, &credential).await,
    }
}

async fn register(shared: &Shared, ordinal: u32) {
    let name = shared.name(ordinal);
    let request = shared.agents[ordinal as usize].lock().register_request(
        &shared.config.token,
        &name,
        &shared.labels(ordinal),
        &shared.facts,
    );
    let called = call(shared, ordinal, Call::Register, |client, server| {
        client.post(server.register.clone()).json(&request)
    })
    .await;
    let mut retry_after = Duration::ZERO;
    let registered = match called {
        Called::Answered(response, Reply::Success) => {
            response.json::<RegisterResponse>().await.ok()
        }
        // A real agent stops here (`RegistrationRefused`) and its supervisor starts it again
        // later: the simulated cluster tries again after its backoff.
        Called::Answered(response, reply) => {
            tracing::debug!(status = %response.status(), ?reply, %name, "registration refused");
            None
        }
        Called::Wait { at_least, shed } => {
            retry_after = at_least;
            if shed {
                shared
                    .stats
                    .registrations_shed
                    .fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(%name, "registration failed on every replica");
            None
        }
    };
    match registered {
        Some(registered) => {
            let mut agent = shared.agents[ordinal as usize].lock();
            agent.credential = Some(registered.credential.into());
            agent.backoff.reset();
            agent.fresh = true;
            drop(agent);
            shared.stats.registered.fetch_add(1, Ordering::Relaxed);
            shared.schedule(ordinal, Duration::ZERO);
        }
        None => {
            shared
                .stats
                .registration_errors
                .fetch_add(1, Ordering::Relaxed);
            let delay = retry_delay_millis(
                &mut shared.agents[ordinal as usize].lock().backoff,
                retry_after.as_millis() as u64,
                rand::rng().random(),
            );
            shared.schedule(ordinal, Duration::from_millis(delay));
        }
    }
}

async fn sync(shared: &Shared, ordinal: u32, credential: &str) {
    let request = shared.agents[ordinal as usize]
        .lock()
        .sync_request(&shared.facts);
    let started = Instant::now();
    let called = call(shared, ordinal, Call::Sync, |client, server| {
        client
            .post(server.sync.clone())
            .bearer_auth(credential)
            .json(&request)
    })
    .await;
    let mut retry_after = Duration::ZERO;
    // The error is the reply that refused the sync, if one did.
    let reply: Result<Option<SyncResponse>, Option<Reply>> = match called {
        Called::Answered(_, Reply::Unchanged) => Ok(None),
        Called::Answered(response, Reply::Success) => response
            .json::<SyncResponse>()
            .await
            .map(Some)
            .map_err(|_| None),
        Called::Answered(_, reply) => Err(Some(reply)),
        Called::Wait { at_least, .. } => {
            retry_after = at_least;
            Err(None)
        }
    };
    shared.stats.record_latency(started.elapsed());
    shared.stats.syncs.fetch_add(1, Ordering::Relaxed);
    let mut reply = match reply {
        Ok(reply) => reply,
        Err(refusal) => {
            shared.stats.sync_errors.fetch_add(1, Ordering::Relaxed);
            let mut agent = shared.agents[ordinal as usize].lock();
            agent.machine.on_failure();
            if refusal == Some(Reply::CredentialRejected) {
                agent.credential = None;
            }
            if agent.online {
                agent.online = false;
                shared.stats.online.fetch_sub(1, Ordering::Relaxed);
            }
            let delay = retry_delay_millis(
                &mut agent.backoff,
                retry_after.as_millis() as u64,
                rand::rng().random(),
            );
            drop(agent);
            shared.schedule(ordinal, Duration::from_millis(delay));
            return;
        }
    };
    // Content that came inside the reply is kept (verified once per digest) and not fetched.
    let mut inlined = Vec::new();
    if let Some(reply) = &mut reply {
        for (digest, content) in std::mem::take(&mut reply.contents) {
            if shared.verdicts.has_content(&digest) || verify_content(&digest, content.bytes()) {
                shared.verdicts.keep_content(&digest, content.bytes());
                inlined.push(digest);
            }
        }
    }
    let to_fetch = {
        let mut agent = shared.agents[ordinal as usize].lock();
        agent.backoff.reset();
        if !agent.online {
            agent.online = true;
            shared.stats.online.fetch_add(1, Ordering::Relaxed);
        }
        agent.on_reply(reply, &shared.sets)
    };
    // Verdicts by deployment id: it stands for the content digest and the options.
    let mut judged = HashMap::new();
    for bundle in &to_fetch {
        if let Some(verdict) = verdict(shared, ordinal, credential, bundle, &inlined).await {
            judged.insert(bundle.deployment.clone(), verdict);
        }
    }
    let changed = {
        let name = shared.name(ordinal);
        let lookup = |bundle: &DesiredBundle| judged.get(&bundle.deployment).cloned();
        shared.agents[ordinal as usize].lock().apply_desired(
            &name,
            &lookup,
            shared.outcomes,
            &shared.stats,
        )
    };
    let delay = if changed {
        // Report what was just applied right away, as the real agent does.
        Duration::ZERO
    } else if shared.flaps(ordinal) {
        let mut agent = shared.agents[ordinal as usize].lock();
        if agent.flap_countdown == 0 {
            agent.flap_countdown = rand::rng().random_range(5..15);
            agent.online = false;
            shared.stats.online.fetch_sub(1, Ordering::Relaxed);
            // Silent for four intervals: longer than the server's default offline window.
            shared.config.interval * 4
        } else {
            agent.flap_countdown -= 1;
            shared.next_interval()
        }
    } else if std::mem::take(&mut shared.agents[ordinal as usize].lock().fresh) {
        Duration::from_millis(
            rand::rng().random_range(0..=shared.config.interval.as_millis() as u64),
        )
    } else {
        shared.next_interval()
    };
    shared.schedule(ordinal, delay);
}

/// What a call through the replicas came to.
enum Called {
    /// A replica answered (neither busy nor unavailable, see `flotilla_core::protocol`); it is
    /// the cluster's current one now.
    Answered(reqwest::Response, Reply),
    /// No answer to use: retry no sooner than `at_least` (a 429, or every replica unavailable).
    /// `shed` when a replica refused to shed load (429, or 503 while its store is away).
    Wait { at_least: Duration, shed: bool },
}

/// Sends a `call` built by `build` for a replica's URLs to the cluster's current replica and,
/// while they are unavailable, to each other one once: the agent's rules
/// (`flotilla_core::protocol` classifies each answer, `flotilla_core::failover` moves between
/// replicas), so a replica dying leaves no cluster behind.
async fn call(
    shared: &Shared,
    ordinal: u32,
    call: Call,
    build: impl Fn(&reqwest::Client, &ServerUrls) -> reqwest::RequestBuilder,
) -> Called {
    let start = usize::from(shared.agents[ordinal as usize].lock().replica);
    let mut walk = Failover::new(shared.servers.len(), start);
    let mut shed = false;
    loop {
        let index = walk.replica();
        let sent = build(shared.client(ordinal), &shared.servers[index])
            .send()
            .await;
        let reply = match &sent {
            Ok(response) => {
                let status = response.status();
                // Counted as shed: a refusal to serve for now (429, or 503 while its store is
                // away); what the cluster does about it is the classifier's.
                if status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || status == reqwest::StatusCode::SERVICE_UNAVAILABLE
                {
                    shed = true;
                    shared.stats.shed.fetch_add(1, Ordering::Relaxed);
                }
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|value| value.to_str().ok());
                Some(classify(call, status.as_u16(), retry_after))
            }
            Err(error) => {
                tracing::debug!(%error, replica = index, "replica unreachable");
                None
            }
        };
        let outcome = reply.map_or_else(Outcome::no_answer, Reply::outcome);
        let current = match walk.on_outcome(outcome) {
            Step::TryNext { .. } => continue,
            Step::Done { current } => current,
            Step::Wait {
                current,
                at_least_millis,
            } => {
                shared.agents[ordinal as usize].lock().replica = current as u16;
                return Called::Wait {
                    at_least: Duration::from_millis(at_least_millis),
                    shed,
                };
            }
        };
        if current != start {
            shared.agents[ordinal as usize].lock().replica = current as u16;
            shared.stats.failovers.fetch_add(1, Ordering::Relaxed);
        }
        return match (sent, reply) {
            (Ok(response), Some(reply)) => Called::Answered(response, reply),
            // Never `Done` without an answer; counted as every replica failing.
            _ => Called::Wait {
                at_least: Duration::ZERO,
                shed,
            },
        };
    }
}

/// The verdict on `bundle` for this cluster: its content is fetched over HTTP unless the
/// cluster already holds it, and judged as the agent judges it once per content and options
/// (`verdicts`). `None` while the content cannot be had (retried at the next sync).
async fn verdict(
    shared: &Shared,
    ordinal: u32,
    credential: &str,
    bundle: &DesiredBundle,
    inlined: &[String],
) -> Option<Arc<Verdict>> {
    let digest = bundle.digest.as_str();
    let key = verdict_key(bundle);
    let held = inlined.iter().any(|d| d == digest)
        || shared.agents[ordinal as usize].lock().has_content(digest);
    if held {
        if let Some(verdict) = shared.verdicts.cached(key) {
            return Some(verdict);
        }
        if let Some(content) = shared.verdicts.content(digest) {
            return Some(shared.verdicts.judge(key, bundle, &content));
        }
    }
    let called = call(shared, ordinal, Call::Content, |client, server| {
        let mut url = server.content_base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().push(digest);
        }
        client.get(url).bearer_auth(credential)
    })
    .await;
    let Called::Answered(response, reply) = called else {
        return None;
    };
    shared.stats.content_fetches.fetch_add(1, Ordering::Relaxed);
    if reply != Reply::Success {
        return None;
    }
    let bytes = response.bytes().await.ok()?;
    // Verified once per digest: the agent verifies every fetch, but the digest is the same.
    if let Some(verdict) = shared.verdicts.cached(key) {
        return Some(verdict);
    }
    if let Some(content) = shared.verdicts.content(digest) {
        return Some(shared.verdicts.judge(key, bundle, &content));
    }
    if !verify_content(digest, &bytes) {
        return None;
    }
    shared.verdicts.keep_content(digest, &bytes);
    Some(shared.verdicts.judge(key, bundle, &bytes))
}

fn spawn_progress(shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let bars = MultiProgress::new();
        let style = ProgressStyle::with_template("{prefix:>12} [{bar:40}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let registered = bars.add(ProgressBar::new(u64::from(shared.config.clusters)));
        registered.set_style(style.clone());
        registered.set_prefix("registered");
        let online = bars.add(ProgressBar::new(u64::from(shared.config.clusters)));
        online.set_style(style.clone());
        online.set_prefix("online");
        let ready = bars.add(ProgressBar::new(0));
        ready.set_style(style);
        ready.set_prefix("bundles ready");
        let line = bars.add(ProgressBar::new_spinner());
        let mut last = shared.stats.snapshot(true);
        let mut last_at = Instant::now();
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        loop {
            ticker.tick().await;
            let now = shared.stats.snapshot(true);
            let seconds = last_at.elapsed().as_secs_f64().max(1e-3);
            registered.set_position(now.registered);
            registered.set_message(format!("{} errors", now.registration_errors));
            online.set_position(now.online.max(0) as u64);
            ready.set_length(now.bundles_held.max(0) as u64);
            ready.set_position(now.bundles_ready.max(0) as u64);
            line.set_message(format!(
                "{:.0} syncs/s   errors {}   p50 {:.1} ms   p99 {:.1} ms",
                (now.syncs - last.syncs) as f64 / seconds,
                now.sync_errors,
                now.p50_micros as f64 / 1e3,
                now.p99_micros as f64 / 1e3,
            ));
            line.tick();
            last = now;
            last_at = Instant::now();
        }
    })
}

/// State file: one line per registered cluster, `ordinal credential`.
fn load_state(path: &std::path::Path, agents: &mut [Mutex<SimAgent>]) -> anyhow::Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error).with_context(|| format!("read {}", path.display())),
    };
    for (number, line) in text.lines().enumerate() {
        let (ordinal, credential) = line.split_once(' ').with_context(|| {
            format!(
                "{}:{}: expected `ordinal credential`",
                path.display(),
                number + 1
            )
        })?;
        let ordinal: usize = ordinal
            .parse()
            .with_context(|| format!("{}:{}: bad ordinal", path.display(), number + 1))?;
        if let Some(agent) = agents.get_mut(ordinal) {
            agent.get_mut().credential = Some(credential.into());
        }
    }
    Ok(())
}

fn save_state(path: &std::path::Path, agents: &[Mutex<SimAgent>]) -> anyhow::Result<()> {
    let mut text = String::new();
    for (ordinal, agent) in agents.iter().enumerate() {
        if let Some(credential) = &agent.lock().credential {
            text.push_str(&format!("{ordinal} {credential}\n"));
        }
    }
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).with_context(|| format!("write {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("replace {}", path.display()))
}
