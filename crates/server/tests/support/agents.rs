//! A recording simulated fleet for end-to-end rollout tests: agents that speak the real agent
//! protocol (the shared `SyncMachine`: a full report first, then only what changed on top of the
//! acknowledged digest), fetch the content they lack, judge it as the simulated cluster does
//! (`flotilla_agent::simulated::simulate_content`, placeholders resolved per cluster), and record
//! every desired-set change they receive and every state they report, with the time. Tests judge
//! a rollout from this journal, never from the server's own bookkeeping.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use flotilla_agent::simulated::simulate_content;
use flotilla_api::{
    BundleState, ClusterFacts,
    agent::{BundleReport, DesiredBundle, RegisterRequest, RegisterResponse, SyncResponse},
};
use flotilla_core::{digest::verify_content, sync::SyncMachine};
use parking_lot::Mutex;
use reqwest::header::CONTENT_TYPE;
use tokio::{sync::Notify, task::JoinHandle};

/// How often each agent syncs: fast, so a test's waves move within seconds. The agents tell the
/// server a 1 s interval (the smallest it takes), so Offline still comes from missed syncs.
pub const SYNC_EVERY: Duration = Duration::from_millis(100);

/// The newest desired set an agent received named `digest` for `bundle`, where before it named
/// another (or none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub at: Duration,
    pub cluster: String,
    pub bundle: String,
    pub digest: String,
    pub deployment: String,
}

/// A bundle state an agent reported and the server acknowledged; `at` is when the request left
/// (before the server could know it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    pub at: Duration,
    pub cluster: String,
    pub bundle: String,
    pub deployment: String,
    pub digest: String,
    pub state: BundleState,
    pub message: Option<String>,
}

/// A sync reply that carried a desired set (the agent's etag was not current), whether or not
/// any bundle in it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredSet {
    pub at: Duration,
    pub cluster: String,
    pub etag: String,
}

/// Everything the fleet's agents saw and said, in the order it happened.
#[derive(Debug, Default)]
pub struct Journal {
    pub receipts: Vec<Receipt>,
    pub reports: Vec<Reported>,
    pub desired_sets: Vec<DesiredSet>,
    /// Successful syncs per cluster.
    pub syncs: HashMap<String, u64>,
}

impl Journal {
    /// Times `cluster` was handed `digest` of `bundle`.
    pub fn receipts_of(&self, cluster: &str, bundle: &str, digest: &str) -> Vec<Duration> {
        self.receipts
            .iter()
            .filter(|r| r.cluster == cluster && r.bundle == bundle && r.digest == digest)
            .map(|r| r.at)
            .collect()
    }

    pub fn first_receipt(&self, cluster: &str, bundle: &str, digest: &str) -> Option<Duration> {
        self.receipts_of(cluster, bundle, digest).first().copied()
    }

    /// Clusters ever handed `digest` of `bundle`.
    pub fn receivers(&self, bundle: &str, digest: &str) -> BTreeSet<String> {
        self.receipts
            .iter()
            .filter(|r| r.bundle == bundle && r.digest == digest)
            .map(|r| r.cluster.clone())
            .collect()
    }

    /// The digest of `bundle` the cluster's newest desired set names.
    pub fn holds(&self, cluster: &str, bundle: &str) -> Option<&str> {
        self.receipts
            .iter()
            .rev()
            .find(|r| r.cluster == cluster && r.bundle == bundle)
            .map(|r| r.digest.as_str())
    }

    /// The cluster's newest acknowledged report of `bundle`.
    pub fn latest_report(&self, cluster: &str, bundle: &str) -> Option<&Reported> {
        self.reports
            .iter()
            .rev()
            .find(|r| r.cluster == cluster && r.bundle == bundle)
    }

    /// Whether the cluster's newest report of `bundle` says `digest` is Ready.
    pub fn reports_ready(&self, cluster: &str, bundle: &str, digest: &str) -> bool {
        self.latest_report(cluster, bundle)
            .is_some_and(|r| r.digest == digest && r.state == BundleState::Ready)
    }

    /// Reports of `digest` of `bundle` by `cluster`, oldest first.
    pub fn reports_of<'a>(
        &'a self,
        cluster: &'a str,
        bundle: &'a str,
        digest: &'a str,
    ) -> impl Iterator<Item = &'a Reported> + 'a {
        self.reports
            .iter()
            .filter(move |r| r.cluster == cluster && r.bundle == bundle && r.digest == digest)
    }

    /// When the cluster first reported `digest` Ready.
    pub fn first_ready(&self, cluster: &str, bundle: &str, digest: &str) -> Option<Duration> {
        self.reports_of(cluster, bundle, digest)
            .find(|r| r.state == BundleState::Ready)
            .map(|r| r.at)
    }

    /// The earliest time the agent's own reports prove `digest` soaked for `soak`: a Ready report
    /// at `t0` and no other state reported for it within `soak` after. No server can have seen a
    /// soak end before this, since it learns of each report only after the agent sent it.
    pub fn soaked_at(
        &self,
        cluster: &str,
        bundle: &str,
        digest: &str,
        soak: Duration,
    ) -> Option<Duration> {
        self.soaked_since(cluster, bundle, digest, soak, Duration::ZERO)
    }

    /// [`Journal::soaked_at`], counting only reports sent at or after `since` (a digest that
    /// comes back, as after an undo).
    pub fn soaked_since(
        &self,
        cluster: &str,
        bundle: &str,
        digest: &str,
        soak: Duration,
        since: Duration,
    ) -> Option<Duration> {
        let mut streak: Option<Duration> = None;
        for report in self
            .reports_of(cluster, bundle, digest)
            .filter(|r| r.at >= since)
        {
            if let Some(start) = streak
                && report.at >= start + soak
            {
                return Some(start + soak);
            }
            match (report.state == BundleState::Ready, streak) {
                (true, None) => streak = Some(report.at),
                (true, Some(_)) => {}
                (false, _) => streak = None,
            }
        }
        streak.map(|start| start + soak)
    }

    /// Desired sets the cluster was sent within `(after, before)`.
    pub fn desired_sets_between(
        &self,
        cluster: &str,
        after: Duration,
        before: Duration,
    ) -> Vec<&DesiredSet> {
        self.desired_sets
            .iter()
            .filter(|d| d.cluster == cluster && d.at > after && d.at < before)
            .collect()
    }

    /// Receipts of any digest of `bundle` after `after`.
    pub fn receipts_after(&self, bundle: &str, after: Duration) -> Vec<&Receipt> {
        self.receipts
            .iter()
            .filter(|r| r.bundle == bundle && r.at > after)
            .collect()
    }
}

/// Labels of one simulated cluster.
pub type Labels = BTreeMap<String, String>;

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

struct Agent {
    online: Arc<AtomicBool>,
    wake: Arc<Notify>,
    /// When set, the agent takes new desired sets (and records them) but applies nothing: its
    /// cluster keeps running, and reporting, what it had.
    stuck: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

/// A fleet of simulated agents against one server URL (which may change hands: a restarted
/// server on the same address is the same fleet's server).
pub struct SimFleet {
    base: String,
    http: reqwest::Client,
    token: String,
    epoch: Instant,
    journal: Arc<Mutex<Journal>>,
    agents: Mutex<BTreeMap<String, Agent>>,
}

impl SimFleet {
    /// A fleet registering with `token` (a registration token's secret) at `base`
    /// (`http://127.0.0.1:PORT`).
    pub fn new(base: &str, token: &str) -> SimFleet {
        // reqwest is built without a default TLS provider (the binary installs ring, as here).
        let _ = rustls::crypto::ring::default_provider().install_default();
        SimFleet {
            base: base.to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("HTTP client"),
            token: token.to_string(),
            epoch: Instant::now(),
            journal: Arc::default(),
            agents: Mutex::default(),
        }
    }

    /// Time on the journal's clock.
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Reads the journal.
    pub fn journal<T>(&self, read: impl FnOnce(&Journal) -> T) -> T {
        read(&self.journal.lock())
    }

    /// Registers a cluster with `labels` and starts its agent.
    pub async fn add(&self, name: &str, labels: Labels) {
        let request = RegisterRequest {
            token: self.token.clone(),
            name: name.to_string(),
            client_id: format!("rollout-test-{name}"),
            labels,
            facts: facts(),
        };
        let response = self
            .http
            .post(format!("{}/agent/v1/register", self.base))
            .json(&request)
            .send()
            .await
            .expect("registration reaches the server");
        let status = response.status().as_u16();
        let text = response.text().await.expect("registration body");
        assert!(
            status == 200 || status == 201,
            "registration of {name} failed: {status} {text}"
        );
        let registered: RegisterResponse = serde_json::from_str(&text).expect("registration JSON");
        let online = Arc::new(AtomicBool::new(true));
        let wake = Arc::new(Notify::new());
        let stuck = Arc::new(AtomicBool::new(false));
        let loop_ = AgentLoop {
            name: name.to_string(),
            base: self.base.clone(),
            http: self.http.clone(),
            credential: registered.credential,
            epoch: self.epoch,
            journal: self.journal.clone(),
            online: online.clone(),
            wake: wake.clone(),
            stuck: stuck.clone(),
        };
        let task = tokio::spawn(loop_.run());
        self.agents.lock().insert(
            name.to_string(),
            Agent {
                online,
                wake,
                stuck,
                task,
            },
        );
    }

    /// Registers `count` clusters `{prefix}-{i}` (from 1) with the same labels.
    pub async fn add_many(&self, prefix: &str, count: usize, labels: &Labels) -> Vec<String> {
        let mut names = Vec::new();
        for i in 1..=count {
            let name = format!("{prefix}-{i}");
            self.add(&name, labels.clone()).await;
            names.push(name);
        }
        names
    }

    /// The agent stops syncing (its cluster keeps what it applied), as when it loses its link.
    pub fn stop(&self, name: &str) {
        self.agents.lock()[name]
            .online
            .store(false, Ordering::SeqCst);
    }

    /// The agent syncs again.
    pub fn start(&self, name: &str) {
        let agents = self.agents.lock();
        agents[name].online.store(true, Ordering::SeqCst);
        agents[name].wake.notify_one();
    }

    /// The agent keeps taking desired sets but applies nothing new (see [`Agent::stuck`]).
    pub fn set_stuck(&self, name: &str, stuck: bool) {
        self.agents.lock()[name]
            .stuck
            .store(stuck, Ordering::SeqCst);
    }

    /// Waits until `condition` holds on the journal, polling every 50 ms; panics naming `what`
    /// after `within`, with `describe`'s account of the journal.
    pub async fn wait_for(
        &self,
        what: &str,
        within: Duration,
        mut condition: impl FnMut(&Journal) -> bool,
    ) {
        let deadline = Instant::now() + within;
        loop {
            if self.journal(&mut condition) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {within:?} waiting for {what}; journal: {} receipts, {} reports",
                self.journal(|j| j.receipts.len()),
                self.journal(|j| j.reports.len()),
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every running agent has synced `count` more times since the call: a barrier
    /// that lets whatever the server would hand out reach the agents, without guessing a delay.
    pub async fn wait_syncs(&self, count: u64) {
        let running: Vec<String> = self
            .agents
            .lock()
            .iter()
            .filter(|(_, a)| a.online.load(Ordering::SeqCst))
            .map(|(name, _)| name.clone())
            .collect();
        let before: HashMap<String, u64> = self.journal(|j| j.syncs.clone());
        self.wait_for(
            &format!("{count} more syncs of every running agent"),
            Duration::from_secs(30),
            |journal| {
                running.iter().all(|name| {
                    journal.syncs.get(name).copied().unwrap_or(0)
                        >= before.get(name).copied().unwrap_or(0) + count
                })
            },
        )
        .await;
    }
}

impl Drop for SimFleet {
    fn drop(&mut self) {
        for agent in self.agents.lock().values() {
            agent.task.abort();
        }
    }
}

fn facts() -> ClusterFacts {
    ClusterFacts {
        agent_version: Some("rollout-test".into()),
        sync_interval_seconds: Some(1),
        ..ClusterFacts::default()
    }
}

/// One agent's loop: sync, take the new desired set, fetch and judge what it lacks, repeat.
struct AgentLoop {
    name: String,
    base: String,
    http: reqwest::Client,
    credential: String,
    epoch: Instant,
    journal: Arc<Mutex<Journal>>,
    online: Arc<AtomicBool>,
    wake: Arc<Notify>,
    stuck: Arc<AtomicBool>,
}

/// One bundle as applied on the simulated cluster: what was desired, and its verdict.
struct Applied {
    bundle: DesiredBundle,
    report: BundleReport,
}

impl AgentLoop {
    async fn run(self) {
        let facts = facts();
        let mut machine = SyncMachine::new();
        let mut applied: BTreeMap<String, Applied> = BTreeMap::new();
        let mut contents: HashMap<String, Vec<u8>> = HashMap::new();
        let mut held: BTreeMap<String, String> = BTreeMap::new();
        loop {
            while !self.online.load(Ordering::SeqCst) {
                // Woken by `start`; the timeout only guards a lost wake-up.
                let _ =
                    tokio::time::timeout(Duration::from_millis(200), self.wake.notified()).await;
            }
            let reports: Vec<BundleReport> = applied.values().map(|a| a.report.clone()).collect();
            let request = machine.request(&facts, &reports);
            let sent_at = self.epoch.elapsed();
            let reply = self.sync(&request).await;
            let Some(reply) = reply else {
                machine.on_failure();
                tokio::time::sleep(SYNC_EVERY).await;
                continue;
            };
            let outcome = machine.on_reply(reply.clone());
            {
                let mut journal = self.journal.lock();
                for report in &request.bundles {
                    let digest = applied
                        .get(&report.bundle)
                        .filter(|a| a.bundle.deployment == report.deployment)
                        .map(|a| a.bundle.digest.clone())
                        .unwrap_or_default();
                    journal.reports.push(Reported {
                        at: sent_at,
                        cluster: self.name.clone(),
                        bundle: report.bundle.clone(),
                        deployment: report.deployment.clone(),
                        digest,
                        state: report.state,
                        message: report.message.clone(),
                    });
                }
                *journal.syncs.entry(self.name.clone()).or_default() += 1;
                let at = self.epoch.elapsed();
                if let Some(reply) = &reply
                    && reply.bundles.is_some()
                {
                    journal.desired_sets.push(DesiredSet {
                        at,
                        cluster: self.name.clone(),
                        etag: reply.etag.clone(),
                    });
                }
                if outcome.desired_changed {
                    for bundle in machine.desired() {
                        if held.get(&bundle.name) != Some(&bundle.digest) {
                            held.insert(bundle.name.clone(), bundle.digest.clone());
                            journal.receipts.push(Receipt {
                                at,
                                cluster: self.name.clone(),
                                bundle: bundle.name.clone(),
                                digest: bundle.digest.clone(),
                                deployment: bundle.deployment.clone(),
                            });
                        }
                    }
                    held.retain(|name, _| machine.desired().iter().any(|b| &b.name == name));
                }
            }
            if let Some(reply) = &reply {
                for (digest, content) in &reply.contents {
                    if verify_content(digest, content.bytes()) {
                        contents.insert(digest.clone(), content.bytes().to_vec());
                    }
                }
            }
            if !self.stuck.load(Ordering::SeqCst) {
                let on_cluster = applied
                    .iter()
                    .map(|(name, a)| (name.clone(), a.bundle.deployment.clone()))
                    .collect();
                let plan = machine.plan(&on_cluster);
                for bundle in plan.apply {
                    if !contents.contains_key(&bundle.digest)
                        && let Some(bytes) = self.fetch(&bundle.digest).await
                    {
                        contents.insert(bundle.digest.clone(), bytes);
                    }
                    // Content not fetched yet: applied on a later pass.
                    let Some(content) = contents.get(&bundle.digest) else {
                        continue;
                    };
                    let report = simulate_content(&bundle, content);
                    applied.insert(bundle.name.clone(), Applied { bundle, report });
                }
                for name in plan.remove {
                    applied.remove(&name);
                }
            }
            if !outcome.sync_again {
                tokio::time::sleep(SYNC_EVERY).await;
            }
        }
    }

    /// One sync: `Some(None)` for "unchanged", `None` when the call failed.
    async fn sync(
        &self,
        request: &flotilla_api::agent::SyncRequest,
    ) -> Option<Option<SyncResponse>> {
        let response = self
            .http
            .post(format!("{}/agent/v1/sync", self.base))
            .bearer_auth(&self.credential)
            .header(CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(request).expect("JSON"))
            .send()
            .await
            .ok()?;
        match response.status().as_u16() {
            204 => Some(None),
            200 => Some(Some(response.json().await.ok()?)),
            _ => None,
        }
    }

    async fn fetch(&self, digest: &str) -> Option<Vec<u8>> {
        let response = self
            .http
            .get(format!("{}/agent/v1/content/{digest}", self.base))
            .bearer_auth(&self.credential)
            .send()
            .await
            .ok()?;
        if response.status().as_u16() != 200 {
            return None;
        }
        let bytes = response.bytes().await.ok()?;
        verify_content(digest, &bytes).then(|| bytes.to_vec())
    }
}
