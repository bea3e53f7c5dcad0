//! Rollouts end to end (issue 25): a real server, a fleet of simulated agents speaking the agent
//! protocol (`support::agents`), and bundles with `spec.rollout`. Every rule is judged from what
//! the agents received and reported (their journal), never from the planner's own bookkeeping;
//! the status endpoint is read only for what it alone can say (phase, reason, held revision).
//!
//! Clusters fail or stay not ready per cluster: the candidate's ConfigMap carries
//! `flotilla.dev/simulate: "${cluster.labels.sim}"`, so clusters labelled `sim=fail` report it
//! Error, `sim=not-ready` NotReady, and `sim=ok` Ready.

mod support;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use flotilla_server::{ServerConfig, Settings};
use serde_json::{Value, json};
use support::{
    API_VERSION, Harness,
    agents::{Journal, Labels, SimFleet, labels},
};

/// Longest any awaited condition may take.
const DEADLINE: Duration = Duration::from_secs(30);

const SIMULATE: &str = "flotilla.dev/simulate";

// ---------------------------------------------------------------- admin API

/// The admin API of a server, in-process or a child process.
struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    fn of(harness: &Harness) -> Admin {
        Admin::at(&format!("http://{}", harness.server.addr), &harness.admin)
    }

    fn at(base: &str, token: &str) -> Admin {
        // reqwest is built without a default TLS provider (the binary installs ring, as here).
        let _ = rustls::crypto::ring::default_provider().install_default();
        Admin {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
            base: base.to_string(),
            token: token.to_string(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("request reaches the server");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn apply(&self, document: &Value) {
        let (status, body) = self
            .call(reqwest::Method::POST, "/api/v1/apply", Some(document))
            .await;
        assert!(
            status == 200 || status == 201,
            "apply failed: {status} {body}"
        );
    }

    /// A registration token's secret.
    async fn token(&self, name: &str) -> String {
        let document = json!({
            "apiVersion": API_VERSION, "kind": "RegistrationToken",
            "metadata": {"name": name}, "spec": {},
        });
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/registrationtokens",
                Some(&document),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["status"]["token"]
            .as_str()
            .expect("secret")
            .to_string()
    }

    async fn status(&self, bundle: &str) -> (u16, Value) {
        self.call(
            reqwest::Method::GET,
            &format!("/api/v1/bundles/{bundle}/rollout"),
            None,
        )
        .await
    }

    /// `POST …/rollout/{verb}`: the HTTP status and the body.
    async fn verb(&self, bundle: &str, verb: &str, body: Option<&Value>) -> (u16, Value) {
        self.call(
            reqwest::Method::POST,
            &format!("/api/v1/bundles/{bundle}/rollout/{verb}"),
            body,
        )
        .await
    }

    /// Asserts that `verb` does not apply: 409 with a JSON error saying why.
    async fn refused(&self, bundle: &str, verb: &str, run: &str) {
        let (code, body) = self.verb(bundle, verb, None).await;
        assert_eq!(code, 409, "{verb} of {run}: {body}");
        assert_eq!(body["code"], 409, "{verb} of {run}: a JSON error: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{verb} of {run}: the error says why: {body}"
        );
    }

    /// Polls the rollout status until `condition` holds.
    async fn wait_status(
        &self,
        bundle: &str,
        what: &str,
        condition: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let (code, status) = self.status(bundle).await;
            if code == 200 && condition(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {bundle}: {what}; last status: {code} {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_phase(&self, bundle: &str, phase: &str) -> Value {
        self.wait_status(bundle, &format!("phase {phase}"), |s| s["phase"] == phase)
            .await
    }

    /// The bundle's revisions, newest first.
    async fn revisions(&self, bundle: &str) -> Vec<Value> {
        let (status, body) = self
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/bundles/{bundle}/revisions"),
                None,
            )
            .await;
        assert_eq!(status, 200, "revisions of {bundle}: {body}");
        body["items"].as_array().expect("items").clone()
    }

    async fn revision_digest(&self, bundle: &str, number: u64) -> String {
        let revisions = self.revisions(bundle).await;
        let revision = revisions
            .iter()
            .find(|r| r["revision"] == number)
            .unwrap_or_else(|| panic!("{bundle} has no revision {number}: {revisions:?}"));
        revision["digest"].as_str().expect("digest").to_string()
    }

    /// Waits until the server counts the cluster Offline (the precondition of an offline
    /// policy; the agent was stopped by the test).
    async fn wait_offline(&self, name: &str) {
        let deadline = Instant::now() + DEADLINE;
        while self.cluster_state(name).await != "Offline" {
            assert!(Instant::now() < deadline, "{name} never went Offline");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn cluster_state(&self, name: &str) -> String {
        let (status, body) = self
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/clusters/{name}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "cluster {name}: {body}");
        body["status"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

// ---------------------------------------------------------------- bundles and fleets

/// A bundle whose ConfigMap carries `value`, targeting every cluster, with `rollout` as its
/// `spec.rollout`. With `simulate`, the ConfigMap carries the simulate annotation from the
/// cluster's `sim` label (candidates that fail where a cluster says so).
fn bundle(name: &str, value: &str, simulate: bool, rollout: &Value) -> Value {
    bundle_simulating(name, value, simulate.then_some("sim"), rollout)
}

/// [`bundle`] with the simulate annotation taken from the cluster's label `label`.
fn bundle_simulating(name: &str, value: &str, label: Option<&str>, rollout: &Value) -> Value {
    let mut config_map = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name}, "data": {"value": value},
    });
    if let Some(label) = label {
        config_map["metadata"]["annotations"] =
            json!({SIMULATE: format!("${{cluster.labels.{label}}}")});
    }
    json!({
        "apiVersion": API_VERSION, "kind": "Bundle",
        "metadata": {"name": name},
        "spec": {
            "resources": [config_map],
            "targets": [{"clusterSelector": {}}],
            "rollout": rollout,
        },
    })
}

/// A selector wave over the clusters labelled `ring=RING`.
fn ring_wave(name: &str, ring: &str, extra: Value) -> Value {
    let mut wave = json!({"name": name, "selector": {"matchLabels": {"ring": ring}}});
    for (key, value) in extra.as_object().into_iter().flatten() {
        wave[key] = value.clone();
    }
    wave
}

fn member(ring: &str, sim: &str) -> Labels {
    labels(&[("ring", ring), ("sim", sim)])
}

/// A test's server, admin client and fleet.
struct Setup {
    harness: Harness,
    admin: Admin,
    fleet: SimFleet,
}

async fn setup(settings: Settings) -> Setup {
    let harness = Harness::with_settings(settings).await;
    let admin = Admin::of(&harness);
    let token = admin.token("fleet").await;
    let fleet = SimFleet::new(&format!("http://{}", harness.server.addr), &token);
    Setup {
        harness,
        admin,
        fleet,
    }
}

/// Writes a bundle's first revision (delivered everywhere at once) and waits until every
/// cluster reports it Ready; its digest.
async fn deploy_first(
    admin: &Admin,
    fleet: &SimFleet,
    clusters: &[String],
    document: &Value,
) -> String {
    let name = document["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();
    admin.apply(document).await;
    let revisions = admin.revisions(&name).await;
    assert_eq!(
        revisions.len(),
        1,
        "the first write is revision 1: {revisions:?}"
    );
    let digest = revisions[0]["digest"].as_str().expect("digest").to_string();
    wait_all_ready(fleet, clusters, &name, &digest).await;
    digest
}

/// A run the test started: the digests it moves between and when it was written.
struct Run {
    stable: String,
    candidate: String,
    candidate_revision: u64,
    written_at: Duration,
}

/// Writes a change of an already deployed bundle, which starts a run from `stable`.
async fn start_run(admin: &Admin, fleet: &SimFleet, document: &Value, stable: &str) -> Run {
    let name = document["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();
    let written_at = fleet.now();
    admin.apply(document).await;
    let newest = admin.revisions(&name).await[0].clone();
    let candidate_revision = newest["revision"].as_u64().expect("revision number");
    let candidate = newest["digest"].as_str().expect("digest").to_string();
    assert_ne!(candidate, stable, "the change is a new revision: {newest}");
    admin
        .wait_status(&name, "a run of the new revision", |s| {
            s["candidateRevision"] == candidate_revision && s["phase"] != ""
        })
        .await;
    Run {
        stable: stable.to_string(),
        candidate,
        candidate_revision,
        written_at,
    }
}

async fn wait_all_ready(fleet: &SimFleet, clusters: &[String], bundle: &str, digest: &str) {
    fleet
        .wait_for(
            &format!("every cluster to report {bundle} {digest} Ready"),
            DEADLINE,
            |j| clusters.iter().all(|c| j.reports_ready(c, bundle, digest)),
        )
        .await;
}

// ---------------------------------------------------------------- judging from the journal

/// The most clusters of `members` that were, at once, handed `digest` and not yet proven done by
/// their own reports: `(not yet Ready, not yet soaked for soak)`. A cluster counts from its first
/// receipt until its first Ready report (resp. the end of its first unbroken soak). Both only
/// ever count fewer clusters than the server had started and not finished, since the server
/// starts a cluster before the agent receives it and learns of a report after it was sent.
fn peak_in_flight(
    journal: &Journal,
    bundle: &str,
    members: &[String],
    digest: &str,
    soak: Duration,
) -> (usize, usize) {
    let spans: Vec<(Duration, Option<Duration>, Option<Duration>)> = members
        .iter()
        .filter_map(|c| {
            let received = journal.first_receipt(c, bundle, digest)?;
            Some((
                received,
                journal.first_ready(c, bundle, digest),
                journal.soaked_at(c, bundle, digest, soak),
            ))
        })
        .collect();
    let mut peak = (0, 0);
    for &(at, _, _) in &spans {
        let started = spans.iter().filter(|(received, _, _)| *received <= at);
        let not_ready = started
            .clone()
            .filter(|(_, ready, _)| ready.is_none_or(|r| r > at))
            .count();
        let not_soaked = started
            .filter(|(_, _, soaked)| soaked.is_none_or(|s| s > at))
            .count();
        peak = (peak.0.max(not_ready), peak.1.max(not_soaked));
    }
    peak
}

/// The latest moment the agents' reports prove every one of `members` soaked `digest`.
fn all_soaked_at(
    journal: &Journal,
    bundle: &str,
    members: &[String],
    digest: &str,
    soak: Duration,
) -> Duration {
    members
        .iter()
        .map(|c| {
            journal
                .soaked_at(c, bundle, digest, soak)
                .unwrap_or_else(|| panic!("{c} never reported {bundle} {digest} Ready"))
        })
        .max()
        .expect("members")
}

/// The earliest receipt of `digest` among `members`.
fn first_receipt_among(
    journal: &Journal,
    bundle: &str,
    members: &[String],
    digest: &str,
) -> Option<Duration> {
    members
        .iter()
        .filter_map(|c| journal.first_receipt(c, bundle, digest))
        .min()
}

fn names(members: &[String]) -> BTreeSet<String> {
    members.iter().cloned().collect()
}

fn failed_clusters(status: &Value) -> Vec<Value> {
    status["reason"]["failedClusters"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrency_is_never_exceeded_judged_from_agent_reports() {
    let Setup {
        harness,
        admin,
        fleet,
    } = setup(Settings::default()).await;
    let canary = fleet.add_many("canary", 2, &member("canary", "ok")).await;
    let rest = fleet.add_many("rest", 10, &member("main", "ok")).await;
    let all: Vec<String> = canary.iter().chain(&rest).cloned().collect();
    let soak = Duration::from_secs(1);
    let rollout = json!({
        "waves": [
            ring_wave("canary", "canary", json!({"maxConcurrency": 1})),
            // 25% of 10, rounded up.
            {"name": "rest", "clusters": "100%", "maxConcurrency": "25%"},
        ],
        "minSoak": "1s",
        "progressDeadline": "20s",
    });
    let stable = deploy_first(&admin, &fleet, &all, &bundle("web", "1", false, &rollout)).await;
    let run = start_run(
        &admin,
        &fleet,
        &bundle("web", "2", false, &rollout),
        &stable,
    )
    .await;
    admin.wait_phase("web", "Succeeded").await;
    wait_all_ready(&fleet, &all, "web", &run.candidate).await;

    fleet.journal(|j| {
        let (not_ready, not_soaked) = peak_in_flight(j, "web", &canary, &run.candidate, soak);
        assert!(
            not_ready <= 1,
            "canary (maxConcurrency 1): {not_ready} clusters held the candidate without reporting it Ready at once"
        );
        assert_eq!(
            not_soaked, 1,
            "canary (maxConcurrency 1): clusters started and not done at once"
        );
        let (not_ready, not_soaked) = peak_in_flight(j, "web", &rest, &run.candidate, soak);
        assert!(
            not_ready <= 3,
            "rest (maxConcurrency 25% of 10 = 3): {not_ready} clusters held the candidate without reporting it Ready at once"
        );
        assert_eq!(
            not_soaked, 3,
            "rest (maxConcurrency 25% of 10 = 3): the most clusters started and not done at once (3 is the limit, \
             reached at the wave's start)"
        );
        for cluster in &all {
            let receipts = j.receipts_of(cluster, "web", &run.candidate);
            assert_eq!(receipts.len(), 1, "{cluster} is started once");
            // One cheap sync: until its turn, a cluster's etag does not move.
            let sets = j.desired_sets_between(cluster, run.written_at, receipts[0]);
            assert!(
                sets.is_empty(),
                "{cluster} was sent a desired set before its turn: {sets:?}"
            );
        }
    });
    harness.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wave_starts_only_after_the_previous_one_soaked() {
    let Setup {
        harness,
        admin,
        fleet,
    } = setup(Settings::default()).await;
    let canary = fleet.add_many("canary", 3, &member("canary", "ok")).await;
    let rest = fleet.add_many("rest", 6, &member("main", "ok")).await;
    let all: Vec<String> = canary.iter().chain(&rest).cloned().collect();
    let soak = Duration::from_secs(2);
    // The same rule for a canary chosen by label and one chosen by share (the seeded shuffle).
    let by_label = json!({
        "waves": [ring_wave("canary", "canary", json!({"maxConcurrency": 3, "minSoak": "2s"}))],
        "minSoak": "1s",
        "progressDeadline": "20s",
    });
    let by_share = json!({
        "waves": [
            {"name": "canary", "clusters": 3, "maxConcurrency": 3, "minSoak": "2s"},
            {"name": "rest", "clusters": "100%"},
        ],
        "minSoak": "1s",
        "progressDeadline": "20s",
    });
    let mut runs = Vec::new();
    for (name, rollout) in [("by-label", &by_label), ("by-share", &by_share)] {
        let stable = deploy_first(&admin, &fleet, &all, &bundle(name, "1", false, rollout)).await;
        let run = start_run(&admin, &fleet, &bundle(name, "2", false, rollout), &stable).await;
        runs.push((name, run));
    }
    let mut sizes = Vec::new();
    for (name, run) in &runs {
        let done = admin.wait_phase(name, "Succeeded").await;
        sizes.push((
            done["waves"][0]["clusters"].clone(),
            done["waves"][1]["clusters"].clone(),
        ));
        wait_all_ready(&fleet, &all, name, &run.candidate).await;
    }
    assert_eq!(
        sizes[1],
        (json!(3), json!(6)),
        "by-share: a 3-cluster canary, then the rest"
    );

    fleet.journal(|j| {
        let (_, run) = &runs[0];
        let canary_soaked = all_soaked_at(j, "by-label", &canary, &run.candidate, soak);
        let rest_started = first_receipt_among(j, "by-label", &rest, &run.candidate)
            .expect("the second wave received the candidate");
        assert!(
            rest_started >= canary_soaked,
            "by-label: the first cluster of the second wave received the candidate at \
             {rest_started:?}, before the last canary's Ready report plus minSoak 2s \
             ({canary_soaked:?})"
        );

        let (_, run) = &runs[1];
        let mut order: Vec<(Duration, String)> = all
            .iter()
            .map(|c| {
                let at = j
                    .first_receipt(c, "by-share", &run.candidate)
                    .expect("received");
                (at, c.clone())
            })
            .collect();
        order.sort();
        let share_canary: Vec<String> = order[..3].iter().map(|(_, c)| c.clone()).collect();
        let canary_soaked = all_soaked_at(j, "by-share", &share_canary, &run.candidate, soak);
        let (rest_started, first_of_rest) = &order[3];
        assert!(
            *rest_started >= canary_soaked,
            "by-share: {first_of_rest}, the fourth cluster, received the candidate at \
             {rest_started:?}, before the 3-cluster canary {share_canary:?} soaked 2s \
             ({canary_soaked:?})"
        );
    });
    harness.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_on_the_old_revision_is_not_done() {
    let Setup {
        harness,
        admin,
        fleet,
    } = setup(Settings::default()).await;
    // canary-1 applies the candidate, which stays NotReady there; canary-2's agent takes the new
    // desired set but applies nothing: it goes on reporting the stable revision Ready.
    fleet.add("canary-1", member("canary", "not-ready")).await;
    fleet.add("canary-2", member("canary", "ok")).await;
    let canary = vec!["canary-1".to_string(), "canary-2".to_string()];
    let rest = fleet.add_many("rest", 6, &member("main", "ok")).await;
    let all: Vec<String> = canary.iter().chain(&rest).cloned().collect();
    let deadline = Duration::from_secs(4);
    let rollout = json!({
        "waves": [ring_wave("canary", "canary", json!({"maxConcurrency": 2}))],
        "minSoak": "1s",
        "progressDeadline": "4s",
        "onFailure": "Halt",
    });
    let stable = deploy_first(&admin, &fleet, &all, &bundle("web", "1", false, &rollout)).await;
    fleet.set_stuck("canary-2", true);
    let run = start_run(&admin, &fleet, &bundle("web", "2", true, &rollout), &stable).await;
    let halted = admin.wait_phase("web", "Halted").await;
    let halted_at = fleet.now();

    assert!(
        halted_at >= run.written_at + deadline,
        "the run failed {:?} after the write, before progressDeadline {deadline:?} could pass",
        halted_at - run.written_at
    );
    assert_eq!(halted["reason"]["reason"], "WaveFailed", "{halted}");
    assert_eq!(halted["reason"]["wave"], "canary", "{halted}");
    let failed: BTreeSet<(String, String)> = failed_clusters(&halted)
        .iter()
        .map(|f| {
            (
                f["cluster"].as_str().unwrap_or_default().to_string(),
                f["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        failed,
        BTreeSet::from([
            ("canary-1".into(), "ProgressDeadlineExceeded".into()),
            ("canary-2".into(), "ProgressDeadlineExceeded".into()),
        ]),
        "{halted}"
    );
    fleet.journal(|j| {
        let one = j
            .latest_report("canary-1", "web")
            .expect("canary-1 reported");
        assert_eq!(
            (one.digest.as_str(), one.state),
            (run.candidate.as_str(), flotilla_api::BundleState::NotReady),
            "canary-1 applied the candidate and it stayed NotReady"
        );
        assert!(
            j.first_receipt("canary-2", "web", &run.candidate).is_some(),
            "canary-2 was handed the candidate"
        );
        assert!(
            j.reports_ready("canary-2", "web", &run.stable),
            "canary-2 reported only the stable revision, Ready"
        );
        assert!(
            j.reports_of("canary-2", "web", &run.candidate)
                .next()
                .is_none(),
            "canary-2 never reported the candidate"
        );
        assert_eq!(
            j.receivers("web", &run.candidate),
            names(&canary),
            "only the canary wave was handed the candidate: the run did not advance"
        );
    });
    harness.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_rolls_back_by_itself() {
    let Setup {
        harness,
        admin,
        fleet,
    } = setup(Settings::default()).await;
    fleet.add("canary-1", member("canary", "fail")).await;
    fleet.add("canary-2", member("canary", "ok")).await;
    fleet.add("canary-3", member("canary", "ok")).await;
    let canary: Vec<String> = (1..=3).map(|i| format!("canary-{i}")).collect();
    let rest = fleet.add_many("rest", 7, &member("main", "ok")).await;
    let all: Vec<String> = canary.iter().chain(&rest).cloned().collect();
    let rollout = json!({
        "waves": [ring_wave("canary", "canary", json!({"mandatory": true, "maxConcurrency": 3}))],
        "minSoak": "1s",
        "progressDeadline": "20s",
    });
    let stable = deploy_first(&admin, &fleet, &all, &bundle("web", "1", false, &rollout)).await;
    let bad = bundle("web", "2", true, &rollout);
    let run = start_run(&admin, &fleet, &bad, &stable).await;
    let rolled_back = admin.wait_phase("web", "RolledBack").await;
    wait_all_ready(&fleet, &canary, "web", &run.stable).await;

    assert_eq!(
        rolled_back["reason"]["reason"], "WaveFailed",
        "{rolled_back}"
    );
    assert_eq!(rolled_back["reason"]["wave"], "canary", "{rolled_back}");
    assert_eq!(
        rolled_back["heldRevision"], run.candidate_revision,
        "the failed revision is held: {rolled_back}"
    );
    let agent_message = fleet.journal(|j| {
        j.reports_of("canary-1", "web", &run.candidate)
            .find(|r| r.state == flotilla_api::BundleState::Error)
            .and_then(|r| r.message.clone())
            .expect("canary-1 reported the candidate in Error, with a message")
    });
    let failed = failed_clusters(&rolled_back);
    let canary_1 = failed
        .iter()
        .find(|f| f["cluster"] == "canary-1")
        .unwrap_or_else(|| panic!("canary-1 is named among the failed clusters: {rolled_back}"));
    assert_eq!(canary_1["reason"], "Error", "{rolled_back}");
    assert!(
        canary_1["message"]
            .as_str()
            .is_some_and(|m| m.contains(&agent_message)),
        "the failure carries the agent's message {agent_message:?}: {rolled_back}"
    );
    assert!(
        canary_1["objects"].as_array().is_some_and(|o| o
            .iter()
            .any(|o| o.as_str().is_some_and(|o| o.contains("web")))),
        "the failure names the failing object: {rolled_back}"
    );
    fleet.journal(|j| {
        assert_eq!(
            j.receivers("web", &run.candidate),
            names(&canary),
            "no cluster outside the canary ever received the failed revision"
        );
        for cluster in &canary {
            assert_eq!(
                j.holds(cluster, "web"),
                Some(run.stable.as_str()),
                "{cluster}"
            );
        }
    });

    // The same bad content again is not a new run: the held revision stays held.
    let rewritten_at = fleet.now();
    admin.apply(&bad).await;
    let (_, after) = admin.status("web").await;
    assert_eq!(after["phase"], "RolledBack", "{after}");
    assert_eq!(
        after["candidateRevision"], run.candidate_revision,
        "{after}"
    );
    assert_eq!(after["started"], rolled_back["started"], "{after}");
    fleet.wait_syncs(10).await;
    let (_, settled) = admin.status("web").await;
    assert_eq!(settled["phase"], "RolledBack", "{settled}");
    fleet.journal(|j| {
        let moved = j.receipts_after("web", rewritten_at);
        assert!(
            moved.is_empty(),
            "rewriting the held revision handed it out again: {moved:?}"
        );
    });
    let phases: Vec<(Value, Value)> = admin
        .revisions("web")
        .await
        .iter()
        .map(|r| (r["revision"].clone(), r["phase"].clone()))
        .collect();
    assert!(
        phases.contains(&(json!(run.candidate_revision), json!("Failed"))),
        "the rolled back revision is listed as Failed: {phases:?}"
    );

    // A newer revision is not held: it rolls out.
    let fixed = start_run(
        &admin,
        &fleet,
        &bundle("web", "3", false, &rollout),
        &run.stable,
    )
    .await;
    let done = admin.wait_phase("web", "Succeeded").await;
    assert_eq!(
        done["candidateRevision"], fixed.candidate_revision,
        "{done}"
    );
    wait_all_ready(&fleet, &all, "web", &fixed.candidate).await;
    harness.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_and_freeze_leave_clusters_where_they_are() {
    let Setup {
        harness,
        admin,
        fleet,
    } = setup(Settings::default()).await;
    fleet.add("canary-1", member("canary", "fail")).await;
    fleet.add("canary-2", member("canary", "ok")).await;
    fleet.add("canary-3", member("canary", "ok")).await;
    let canary: Vec<String> = (1..=3).map(|i| format!("canary-{i}")).collect();
    let rest = fleet.add_many("rest", 5, &member("main", "ok")).await;
    let all: Vec<String> = canary.iter().chain(&rest).cloned().collect();
    let mut runs = Vec::new();
    for (name, on_failure) in [("halted", "Halt"), ("frozen", "Freeze")] {
        let rollout = json!({
            "waves": [ring_wave("canary", "canary", json!({"mandatory": true, "maxConcurrency": 3}))],
            "minSoak": "1s",
            "progressDeadline": "20s",
            "onFailure": on_failure,
        });
        let stable = deploy_first(&admin, &fleet, &all, &bundle(name, "1", false, &rollout)).await;
        let run = start_run(&admin, &fleet, &bundle(name, "2", true, &rollout), &stable).await;
        runs.push((name, run));
    }
    let halted = admin.wait_phase("halted", "Halted").await;
    let frozen = admin.wait_phase("frozen", "Frozen").await;
    let stopped_at = fleet.now();
    for status in [&halted, &frozen] {
        assert_eq!(status["reason"]["reason"], "WaveFailed", "{status}");
        assert!(
            failed_clusters(status)
                .iter()
                .any(|f| f["cluster"] == "canary-1"),
            "{status}"
        );
    }
    // Whatever the server would still hand out reaches the agents within a few syncs.
    fleet.wait_syncs(10).await;
    for (name, run) in &runs {
        fleet.journal(|j| {
            let moved = j.receipts_after(name, stopped_at);
            assert!(
                moved.is_empty(),
                "{name}: clusters moved after the run stopped: {moved:?}"
            );
            assert_eq!(
                j.receivers(name, &run.candidate),
                names(&canary),
                "{name}: only the canary wave was handed the candidate"
            );
            for cluster in &canary {
                assert_eq!(
                    j.holds(cluster, name),
                    Some(run.candidate.as_str()),
                    "{name}: {cluster} keeps the candidate"
                );
            }
            for cluster in ["canary-2", "canary-3"] {
                assert!(
                    j.reports_ready(cluster, name, &run.candidate),
                    "{name}: {cluster}"
                );
            }
            for cluster in &rest {
                assert!(
                    j.reports_ready(cluster, name, &run.stable),
                    "{name}: {cluster}"
                );
            }
        });
    }
    for verb in ["resume", "abort", "pause"] {
        admin.refused("frozen", verb, "a frozen run").await;
    }

    // A person resumes the halted run: the failures so far are accepted, the run goes on.
    let resumed_at = fleet.now();
    let (code, body) = admin.verb("halted", "resume", None).await;
    assert_eq!(code, 200, "{body}");
    admin.wait_phase("halted", "Succeeded").await;
    let (_, halted_run) = &runs[0];
    wait_all_ready(&fleet, &rest, "halted", &halted_run.candidate).await;
    fleet.journal(|j| {
        let started = first_receipt_among(j, "halted", &rest, &halted_run.candidate)
            .expect("the rest started");
        assert!(
            started >= resumed_at,
            "halted: the rest started before the resume"
        );
        let moved = j.receipts_after("frozen", stopped_at);
        assert!(moved.is_empty(), "frozen: clusters moved: {moved:?}");
    });
    harness.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_revision_mid_run_replaces_the_candidate_wave_by_wave() {
    let Setup {
        harness,
        admin,
        fleet,
    } = setup(Settings::default()).await;
    let canary = fleet.add_many("canary", 2, &member("canary", "ok")).await;
    let rest = fleet.add_many("rest", 4, &member("main", "ok")).await;
    let all: Vec<String> = canary.iter().chain(&rest).cloned().collect();
    let soak = Duration::from_secs(1);
    let rollout = json!({
        "waves": [ring_wave("canary", "canary", json!({"pauseAfter": true}))],
        "minSoak": "1s",
        "progressDeadline": "20s",
    });
    let v1 = deploy_first(&admin, &fleet, &all, &bundle("web", "1", false, &rollout)).await;
    let run2 = start_run(&admin, &fleet, &bundle("web", "2", false, &rollout), &v1).await;
    admin.wait_phase("web", "Paused").await;
    // v3 arrives while v2 waits after its canary.
    let run3 = start_run(&admin, &fleet, &bundle("web", "3", false, &rollout), &v1).await;
    let (v2, v3) = (run2.candidate.clone(), run3.candidate.clone());
    admin.wait_phase("web", "Paused").await;
    let (code, body) = admin.verb("web", "resume", None).await;
    assert_eq!(code, 200, "{body}");
    admin.wait_phase("web", "Succeeded").await;
    wait_all_ready(&fleet, &all, "web", &v3).await;
    fleet.journal(|j| {
        assert_eq!(
            j.receivers("web", &v2),
            names(&canary),
            "the replaced revision never went past its canary"
        );
        let canary_soaked = canary
            .iter()
            .map(|c| {
                j.soaked_since(c, "web", &v3, soak, run3.written_at)
                    .expect("the canary soaked v3")
            })
            .max()
            .expect("canaries");
        let rest_started = first_receipt_among(j, "web", &rest, &v3).expect("the rest got v3");
        assert!(
            rest_started >= canary_soaked,
            "the rest got v3 at {rest_started:?}, before the canary soaked it ({canary_soaked:?}): \
             the canary's soak of v2 does not count for v3"
        );
        for cluster in &all {
            assert_eq!(j.receipts_of(cluster, "web", &v3).len(), 1, "{cluster}");
        }
    });
    harness.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_deleted_mid_wave_does_not_stall_the_run() {
    let Setup {
        harness,
        admin,
        fleet,
    } = setup(Settings::default()).await;
    let canary = fleet.add_many("canary", 3, &member("canary", "ok")).await;
    let rest = fleet.add_many("rest", 3, &member("main", "ok")).await;
    let all: Vec<String> = canary.iter().chain(&rest).cloned().collect();
    let rollout = json!({
        "waves": [ring_wave("canary", "canary", json!({}))],
        "minSoak": "1s",
        "progressDeadline": "20s",
    });
    let v1 = deploy_first(&admin, &fleet, &all, &bundle("web", "1", false, &rollout)).await;
    // canary-3 takes the candidate and never applies it: in flight until it leaves the fleet.
    fleet.set_stuck("canary-3", true);
    let run = start_run(&admin, &fleet, &bundle("web", "2", false, &rollout), &v1).await;
    fleet
        .wait_for("the canary to be handed the candidate", DEADLINE, |j| {
            canary
                .iter()
                .all(|c| j.first_receipt(c, "web", &run.candidate).is_some())
        })
        .await;
    fleet.stop("canary-3");
    let (code, body) = admin
        .call(reqwest::Method::DELETE, "/api/v1/clusters/canary-3", None)
        .await;
    assert!(code == 200 || code == 204, "delete canary-3: {code} {body}");
    let done = admin.wait_phase("web", "Succeeded").await;
    let remaining: Vec<String> = all.iter().filter(|c| *c != "canary-3").cloned().collect();
    wait_all_ready(&fleet, &remaining, "web", &run.candidate).await;
    assert!(
        done["reason"].is_null(),
        "membership changes are not failures: {done}"
    );
    harness.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_abort_and_undo() {
    let Setup {
        harness,
        admin,
        fleet,
    } = setup(Settings::default()).await;
    let canary = fleet.add_many("canary", 2, &member("canary", "ok")).await;
    let rest = fleet.add_many("rest", 4, &member("main", "ok")).await;
    let all: Vec<String> = canary.iter().chain(&rest).cloned().collect();
    let soak = Duration::from_secs(1);
    let rollout = json!({
        "waves": [ring_wave("canary", "canary", json!({"pauseAfter": true}))],
        "minSoak": "1s",
        "progressDeadline": "20s",
    });
    let v1 = deploy_first(&admin, &fleet, &all, &bundle("web", "1", false, &rollout)).await;

    // pauseAfter: the run waits after the canary until resumed.
    let run = start_run(&admin, &fleet, &bundle("web", "2", false, &rollout), &v1).await;
    let v2 = run.candidate.clone();
    admin.wait_phase("web", "Paused").await;
    fleet.wait_syncs(5).await;
    fleet.journal(|j| {
        assert_eq!(
            j.receivers("web", &v2),
            names(&canary),
            "paused after the canary"
        );
        for cluster in &canary {
            assert!(j.reports_ready(cluster, "web", &v2), "{cluster}");
        }
    });
    admin.refused("web", "pause", "a paused run").await;
    let resumed_at = fleet.now();
    let (code, body) = admin.verb("web", "resume", None).await;
    assert_eq!(code, 200, "{body}");
    assert_ne!(body["phase"], "Paused", "{body}");
    admin.wait_phase("web", "Succeeded").await;
    wait_all_ready(&fleet, &all, "web", &v2).await;
    fleet.journal(|j| {
        let started = first_receipt_among(j, "web", &rest, &v2).expect("rest started");
        assert!(started >= resumed_at, "the rest started before the resume");
    });
    admin.refused("web", "resume", "a finished run").await;

    // pause mid-wave, then abort: the canary goes back to v2; nobody else ever sees v3.
    let run = start_run(&admin, &fleet, &bundle("web", "3", false, &rollout), &v2).await;
    let v3 = run.candidate.clone();
    fleet
        .wait_for("a canary to receive v3", DEADLINE, |j| {
            !j.receivers("web", &v3).is_empty()
        })
        .await;
    let (code, body) = admin.verb("web", "pause", None).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["phase"], "Paused", "{body}");
    let (code, body) = admin.verb("web", "abort", None).await;
    assert_eq!(code, 200, "{body}");
    let aborted = admin.wait_phase("web", "RolledBack").await;
    assert_eq!(aborted["reason"]["reason"], "Aborted", "{aborted}");
    wait_all_ready(&fleet, &all, "web", &v2).await;
    fleet.journal(|j| {
        let receivers = j.receivers("web", &v3);
        assert!(
            receivers.is_subset(&names(&canary)),
            "only canaries ever saw the aborted revision: {receivers:?}"
        );
    });
    admin.refused("web", "abort", "a rolled back run").await;

    // undo --to-revision 1: v1's content rolls out as a new run, wave by wave.
    let undone_at = fleet.now();
    let (code, body) = admin
        .verb("web", "undo", Some(&json!({"toRevision": 1})))
        .await;
    assert_eq!(code, 200, "{body}");
    let candidate = body["candidateRevision"]
        .as_u64()
        .expect("a candidate revision");
    assert_eq!(
        admin.revision_digest("web", candidate).await,
        v1,
        "undo rolls out revision 1's content: {body}"
    );
    admin.wait_phase("web", "Paused").await;
    let (code, body) = admin.verb("web", "resume", None).await;
    assert_eq!(code, 200, "{body}");
    admin.wait_phase("web", "Succeeded").await;
    wait_all_ready(&fleet, &all, "web", &v1).await;
    fleet.journal(|j| {
        let canary_soaked = canary
            .iter()
            .map(|c| {
                j.soaked_since(c, "web", &v1, soak, undone_at)
                    .expect("the canary soaked revision 1 again")
            })
            .max()
            .expect("canaries");
        for cluster in &rest {
            let received = j
                .receipts_of(cluster, "web", &v1)
                .into_iter()
                .find(|at| *at > undone_at)
                .expect("the undo reached every cluster");
            assert!(
                received >= canary_soaked,
                "{cluster} got revision 1 back before the canary soaked it"
            );
        }
    });

    harness.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_without_a_revision_rolls_back_to_the_previous_stable_revision() {
    let Setup {
        harness,
        admin,
        fleet,
    } = setup(Settings::default()).await;
    fleet.add("canary-1", member("canary", "fail")).await;
    fleet.add("canary-2", member("canary", "ok")).await;
    let canary = ["canary-1".to_string(), "canary-2".to_string()];
    let rest = fleet.add_many("rest", 3, &member("main", "ok")).await;
    let all: Vec<String> = canary.iter().chain(&rest).cloned().collect();
    let rollout = json!({
        "waves": [ring_wave("canary", "canary", json!({"mandatory": true}))],
        "minSoak": "1s",
        "progressDeadline": "20s",
    });
    let v1 = deploy_first(&admin, &fleet, &all, &bundle("web", "1", false, &rollout)).await;
    // Revision 2 fails its canary and is rolled back (held); revision 3 succeeds.
    let failed = start_run(&admin, &fleet, &bundle("web", "2", true, &rollout), &v1).await;
    admin.wait_phase("web", "RolledBack").await;
    wait_all_ready(&fleet, &all, "web", &v1).await;
    let run = start_run(&admin, &fleet, &bundle("web", "3", false, &rollout), &v1).await;
    let v3 = run.candidate.clone();
    admin.wait_phase("web", "Succeeded").await;
    wait_all_ready(&fleet, &all, "web", &v3).await;

    // The stable revision before revision 3 is revision 1; revision 2 never was stable.
    let (code, body) = admin.verb("web", "undo", None).await;
    assert_eq!(code, 200, "{body}");
    let candidate = body["candidateRevision"]
        .as_u64()
        .expect("a candidate revision");
    let digest = admin.revision_digest("web", candidate).await;
    assert_ne!(
        digest, failed.candidate,
        "undo without --to-revision rolls out revision {}, the one that failed its canary and was \
         rolled back: {body}",
        failed.candidate_revision
    );
    assert_eq!(
        digest, v1,
        "undo rolls out revision 1's content again: {body}"
    );
    admin.wait_phase("web", "Succeeded").await;
    wait_all_ready(&fleet, &all, "web", &v1).await;
    harness.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_failures_tolerates_that_many_failed_clusters_and_no_more() {
    let Setup {
        harness,
        admin,
        fleet,
    } = setup(Settings::default()).await;
    // `one` fails on rest-1 only, `two` on rest-1 and rest-2.
    let with = |one: &str, two: &str| {
        labels(&[("ring", "main"), ("sim", "ok"), ("one", one), ("two", two)])
    };
    let canary = fleet
        .add_many(
            "canary",
            1,
            &labels(&[
                ("ring", "canary"),
                ("sim", "ok"),
                ("one", "ok"),
                ("two", "ok"),
            ]),
        )
        .await;
    fleet.add("rest-1", with("fail", "fail")).await;
    fleet.add("rest-2", with("ok", "fail")).await;
    let mut rest = vec!["rest-1".to_string(), "rest-2".to_string()];
    for i in 3..=6 {
        let name = format!("rest-{i}");
        fleet.add(&name, with("ok", "ok")).await;
        rest.push(name);
    }
    let all: Vec<String> = canary.iter().chain(&rest).cloned().collect();
    let rollout = json!({
        "waves": [
            ring_wave("canary", "canary", json!({})),
            // 20% of 6, rounded down: 1.
            ring_wave("main", "main", json!({"maxFailures": "20%", "maxConcurrency": 2})),
        ],
        "minSoak": "1s",
        "progressDeadline": "20s",
    });
    let mut runs = Vec::new();
    for name in ["one", "two"] {
        let stable = deploy_first(&admin, &fleet, &all, &bundle(name, "1", false, &rollout)).await;
        let document = bundle_simulating(name, "2", Some(name), &rollout);
        runs.push(start_run(&admin, &fleet, &document, &stable).await);
    }
    let [one, two] = &runs[..] else {
        unreachable!()
    };
    let succeeded = admin.wait_phase("one", "Succeeded").await;
    let rolled_back = admin.wait_phase("two", "RolledBack").await;
    assert!(
        succeeded["reason"].is_null(),
        "one failure of 6 is tolerated: {succeeded}"
    );
    assert_eq!(rolled_back["reason"]["wave"], "main", "{rolled_back}");
    let ok: Vec<String> = rest[1..].to_vec();
    wait_all_ready(&fleet, &ok, "one", &one.candidate).await;
    wait_all_ready(&fleet, &all, "two", &two.stable).await;
    fleet.journal(|j| {
        let failing = j.latest_report("rest-1", "one").expect("rest-1 reported");
        assert_eq!(
            (failing.digest.as_str(), failing.state),
            (one.candidate.as_str(), flotilla_api::BundleState::Error),
            "one: the tolerated failure stays where it is"
        );
        assert_eq!(j.receivers("one", &one.candidate), names(&all));
    });
    harness.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_relabelled_into_or_out_of_a_run_are_churn_not_failure() {
    let Setup {
        harness,
        admin,
        fleet,
    } = setup(Settings::default()).await;
    let prod = |ring: &str| labels(&[("ring", ring), ("sim", "ok"), ("env", "prod")]);
    let canary = fleet.add_many("canary", 2, &prod("canary")).await;
    let main = fleet.add_many("main", 3, &prod("main")).await;
    fleet
        .add(
            "newcomer",
            labels(&[("ring", "canary"), ("sim", "ok"), ("env", "dev")]),
        )
        .await;
    let all: Vec<String> = canary.iter().chain(&main).cloned().collect();
    let soak = Duration::from_secs(1);
    let rollout = json!({
        "waves": [ring_wave("canary", "canary", json!({"pauseAfter": true}))],
        "minSoak": "1s",
        "progressDeadline": "20s",
    });
    let prod_only = |mut document: Value| {
        document["spec"]["targets"] =
            json!([{"clusterSelector": {"matchLabels": {"env": "prod"}}}]);
        document
    };
    let v1 = deploy_first(
        &admin,
        &fleet,
        &all,
        &prod_only(bundle("web", "1", false, &rollout)),
    )
    .await;
    let run = start_run(
        &admin,
        &fleet,
        &prod_only(bundle("web", "2", false, &rollout)),
        &v1,
    )
    .await;
    admin.wait_phase("web", "Paused").await;

    // newcomer starts matching after its wave (the canary) is done: the stable revision.
    relabel(&admin, "newcomer", "env", "prod").await;
    let newcomer = ["newcomer".to_string()];
    wait_all_ready(&fleet, &newcomer, "web", &v1).await;
    // main-3 takes the candidate, never applies it, and stops matching mid-wave.
    fleet.set_stuck("main-3", true);
    let (code, body) = admin.verb("web", "resume", None).await;
    assert_eq!(code, 200, "{body}");
    fleet
        .wait_for("main-3 to be handed the candidate", DEADLINE, |j| {
            j.first_receipt("main-3", "web", &run.candidate).is_some()
        })
        .await;
    relabel(&admin, "main-3", "env", "dev").await;
    let done = admin.wait_phase("web", "Succeeded").await;
    assert!(
        done["reason"].is_null(),
        "membership changes are not failures: {done}"
    );
    let stayed: Vec<String> = all.iter().filter(|c| *c != "main-3").cloned().collect();
    wait_all_ready(&fleet, &stayed, "web", &run.candidate).await;
    wait_all_ready(&fleet, &newcomer, "web", &run.candidate).await;
    fleet.journal(|j| {
        let main_soaked = all_soaked_at(j, "web", &main[..2], &run.candidate, soak);
        let newcomer_started = j
            .first_receipt("newcomer", "web", &run.candidate)
            .expect("newcomer got the candidate");
        assert!(
            newcomer_started >= main_soaked,
            "newcomer, matching only after its wave, got the candidate at {newcomer_started:?}, \
             while the run was still going (its last wave soaked at {main_soaked:?})"
        );
    });
    harness.shutdown().await;
}

/// Sets one label of a cluster (as `flotilla label`: read, change, replace).
async fn relabel(admin: &Admin, cluster: &str, key: &str, value: &str) {
    let path = format!("/api/v1/clusters/{cluster}");
    let (code, mut object) = admin.call(reqwest::Method::GET, &path, None).await;
    assert_eq!(code, 200, "{object}");
    object["metadata"]["labels"][key] = json!(value);
    if let Some(object) = object.as_object_mut() {
        object.remove("status");
    }
    let (code, body) = admin.call(reqwest::Method::PUT, &path, Some(&object)).await;
    assert_eq!(code, 200, "relabel {cluster}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiners_follow_their_policy() {
    let Setup {
        harness,
        admin,
        fleet,
    } = setup(Settings::default()).await;
    let canary = fleet.add_many("canary", 2, &member("canary", "ok")).await;
    let main = fleet.add_many("main", 4, &member("main", "ok")).await;
    let all: Vec<String> = canary.iter().chain(&main).cloned().collect();
    let soak = Duration::from_secs(1);
    let bundles = [("joiners-stable", "stable"), ("joiners-last", "lastWave")];
    let mut runs = Vec::new();
    for (name, policy) in bundles {
        let rollout = json!({
            "waves": [
                ring_wave("canary", "canary", json!({"pauseAfter": true})),
                ring_wave("main", "main", json!({"maxConcurrency": 2})),
            ],
            "minSoak": "1s",
            "progressDeadline": "20s",
            "lateJoiners": policy,
        });
        let stable = deploy_first(&admin, &fleet, &all, &bundle(name, "1", false, &rollout)).await;
        let run = start_run(&admin, &fleet, &bundle(name, "2", false, &rollout), &stable).await;
        runs.push((name, run));
    }
    for (name, _) in &runs {
        admin.wait_phase(name, "Paused").await;
    }
    // Mid-run, after the canary wave: one joiner whose wave is passed, one whose is not.
    fleet.add("late-canary", member("canary", "ok")).await;
    fleet.add("late-main", member("main", "ok")).await;
    let late = ["late-canary".to_string(), "late-main".to_string()];
    for (name, run) in &runs {
        wait_all_ready(&fleet, &late, name, &run.stable).await;
    }
    let resumed_at = fleet.now();
    let mut succeeded_at = Vec::new();
    for (name, _) in &runs {
        let (code, body) = admin.verb(name, "resume", None).await;
        assert_eq!(code, 200, "{body}");
    }
    for (name, _) in &runs {
        admin.wait_phase(name, "Succeeded").await;
        succeeded_at.push(fleet.now());
    }
    let everyone: Vec<String> = all.iter().chain(&late).cloned().collect();
    for (name, run) in &runs {
        wait_all_ready(&fleet, &everyone, name, &run.candidate).await;
    }

    fleet.journal(|j| {
        for ((name, run), succeeded_at) in runs.iter().zip(&succeeded_at) {
            for cluster in &late {
                let first = j.receipts.iter().find(|r| r.cluster == *cluster && r.bundle == *name);
                assert_eq!(
                    first.map(|r| r.digest.as_str()),
                    Some(run.stable.as_str()),
                    "{name}: {cluster} joined on the stable revision"
                );
                let started = j.first_receipt(cluster, name, &run.candidate).expect("started");
                assert!(started >= resumed_at, "{name}: {cluster} started before its wave");
            }
            // late-main's wave had not started: it is one of the run's clusters.
            let soaked = j
                .soaked_at("late-main", name, &run.candidate, soak)
                .expect("late-main soaked");
            assert!(
                soaked <= *succeeded_at,
                "{name}: the run succeeded before late-main, a member of its main wave, soaked"
            );
            let main_soaked = all_soaked_at(j, name, &main, &run.candidate, soak);
            let late_canary = j
                .first_receipt("late-canary", name, &run.candidate)
                .expect("late-canary got the candidate");
            if *name == "joiners-stable" {
                // Its wave was passed: the stable revision until the run ended.
                assert!(
                    late_canary >= main_soaked,
                    "{name}: late-canary (lateJoiners: stable) got the candidate at {late_canary:?}, \
                     while the run was still going (its last wave soaked at {main_soaked:?})"
                );
            } else {
                // lastWave: it joins the last wave, and the run waits for it.
                let soaked = j
                    .soaked_at("late-canary", name, &run.candidate, soak)
                    .expect("late-canary soaked");
                assert!(
                    soaked <= *succeeded_at,
                    "{name}: the run succeeded before late-canary (lateJoiners: lastWave) soaked"
                );
            }
        }
    });
    harness.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_clusters_follow_their_policy() {
    // Clusters tell the server a 1 s interval: Offline after 2 s without a sync.
    let settings = Settings {
        offline_missed_intervals: 1,
        ..Settings::default()
    };
    let Setup {
        harness,
        admin,
        fleet,
    } = setup(settings).await;
    let online_canary = fleet.add_many("canary", 2, &member("canary", "ok")).await;
    fleet.add("canary-away", member("canary", "ok")).await;
    let rest = fleet.add_many("rest", 4, &member("main", "ok")).await;
    let all: Vec<String> = online_canary
        .iter()
        .chain(&rest)
        .cloned()
        .chain(["canary-away".to_string()])
        .collect();
    let soak = Duration::from_secs(1);
    let policies = [
        ("offline-skip", "skip"),
        ("offline-wait", "wait"),
        ("offline-fail", "fail"),
    ];
    let mut stables = Vec::new();
    let rollout = |policy: &str| {
        json!({
            "waves": [ring_wave("canary", "canary", json!({"maxConcurrency": 3}))],
            "minSoak": "1s",
            "progressDeadline": "20s",
            "offline": policy,
        })
    };
    for (name, policy) in policies {
        let document = bundle(name, "1", false, &rollout(policy));
        stables.push(deploy_first(&admin, &fleet, &all, &document).await);
    }
    fleet.stop("canary-away");
    admin.wait_offline("canary-away").await;
    let mut runs = Vec::new();
    for ((name, policy), stable) in policies.iter().zip(&stables) {
        let document = bundle(name, "2", false, &rollout(policy));
        runs.push(start_run(&admin, &fleet, &document, stable).await);
    }
    let [skip, wait, fail] = &runs[..] else {
        unreachable!()
    };

    // skip: the run goes on without it.
    admin.wait_phase("offline-skip", "Succeeded").await;
    // fail: counted as failed; the canary tolerates none (maxFailures 0), so the run rolls back.
    let failed = admin.wait_phase("offline-fail", "RolledBack").await;
    assert!(
        failed_clusters(&failed)
            .iter()
            .any(|f| f["cluster"] == "canary-away" && f["reason"] == "Offline"),
        "{failed}"
    );
    // wait: the canary's online clusters soak, and still the run does not move on.
    fleet
        .wait_for(
            "the online canaries to soak offline-wait's candidate",
            DEADLINE,
            |j| {
                let now = fleet.now();
                online_canary.iter().all(|c| {
                    j.soaked_at(c, "offline-wait", &wait.candidate, soak)
                        .is_some_and(|s| s <= now)
                })
            },
        )
        .await;
    fleet.wait_syncs(10).await;
    let (_, waiting) = admin.status("offline-wait").await;
    assert_eq!(waiting["phase"], "Progressing", "{waiting}");
    fleet.journal(|j| {
        assert_eq!(
            j.receivers("offline-wait", &wait.candidate),
            names(&online_canary),
            "offline-wait: nothing past the canary while canary-away is waited for"
        );
        assert!(
            j.receivers("offline-skip", &skip.candidate)
                .contains("rest-1")
        );
        assert!(
            !j.receivers("offline-skip", &skip.candidate)
                .contains("canary-away")
        );
        // The step that starts the canary fails it (canary-away counts as failed at once), so
        // its online clusters may or may not see the candidate before they are sent back.
        let receivers = j.receivers("offline-fail", &fail.candidate);
        assert!(
            receivers.is_subset(&names(&online_canary)),
            "offline-fail: the run stopped at the canary: {receivers:?}"
        );
    });

    let back_at = fleet.now();
    fleet.start("canary-away");
    admin.wait_phase("offline-wait", "Succeeded").await;
    wait_all_ready(&fleet, &all, "offline-wait", &wait.candidate).await;
    wait_all_ready(&fleet, &all, "offline-skip", &skip.candidate).await;
    wait_all_ready(&fleet, &all, "offline-fail", &fail.stable).await;
    fleet.journal(|j| {
        let away_soaked = j
            .soaked_at("canary-away", "offline-wait", &wait.candidate, soak)
            .expect("canary-away soaked");
        assert!(away_soaked >= back_at);
        let rest_started = first_receipt_among(j, "offline-wait", &rest, &wait.candidate)
            .expect("the rest started");
        assert!(
            rest_started >= away_soaked,
            "offline-wait: the rest started at {rest_started:?}, before canary-away came back and \
             soaked ({away_soaked:?})"
        );
        assert!(
            j.first_receipt("canary-away", "offline-skip", &skip.candidate)
                .is_some_and(|at| at >= back_at),
            "offline-skip: canary-away takes the revision when it returns"
        );
        assert!(
            j.receipts_of("canary-away", "offline-fail", &fail.candidate)
                .is_empty(),
            "offline-fail: canary-away never got the failed revision"
        );
    });
    harness.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_going_offline_mid_wave_follow_their_policy() {
    // Clusters tell the server a 1 s interval: Offline after 2 s without a sync.
    let settings = Settings {
        offline_missed_intervals: 1,
        ..Settings::default()
    };
    let Setup {
        harness,
        admin,
        fleet,
    } = setup(settings).await;
    let canary = fleet.add_many("canary", 2, &member("canary", "ok")).await;
    let rest = fleet.add_many("rest", 4, &member("main", "ok")).await;
    let all: Vec<String> = canary.iter().chain(&rest).cloned().collect();
    let others: Vec<String> = all.iter().filter(|c| *c != "rest-1").cloned().collect();
    let soak = Duration::from_secs(1);
    let policies = [
        ("midway-skip", "skip"),
        ("midway-wait", "wait"),
        ("midway-fail", "fail"),
    ];
    let rollout = |policy: &str| {
        json!({
            "waves": [ring_wave("canary", "canary", json!({}))],
            "minSoak": "1s",
            "progressDeadline": "20s",
            "offline": policy,
        })
    };
    let mut stables = Vec::new();
    for (name, policy) in policies {
        let document = bundle(name, "1", false, &rollout(policy));
        stables.push(deploy_first(&admin, &fleet, &all, &document).await);
    }
    // rest-1 takes the candidates but never applies them (in flight), then goes away.
    fleet.set_stuck("rest-1", true);
    let mut runs = Vec::new();
    for ((name, policy), stable) in policies.iter().zip(&stables) {
        let document = bundle(name, "2", false, &rollout(policy));
        runs.push(start_run(&admin, &fleet, &document, stable).await);
    }
    let [skip, wait, fail] = &runs[..] else {
        unreachable!()
    };
    fleet
        .wait_for("rest-1 to be handed every candidate", DEADLINE, |j| {
            policies
                .iter()
                .zip(&runs)
                .all(|((name, _), run)| j.first_receipt("rest-1", name, &run.candidate).is_some())
        })
        .await;
    fleet.stop("rest-1");
    let stopped_at = fleet.now();
    admin.wait_offline("rest-1").await;

    // skip: the run finishes without it.
    admin.wait_phase("midway-skip", "Succeeded").await;
    // fail: it counts as failed; the wave tolerates none, so the run rolls back.
    let failed = admin.wait_phase("midway-fail", "RolledBack").await;
    assert!(
        failed_clusters(&failed)
            .iter()
            .any(|f| f["cluster"] == "rest-1" && f["reason"] == "Offline"),
        "{failed}"
    );
    wait_all_ready(&fleet, &others, "midway-fail", &fail.stable).await;
    // wait: the others soak, and the run still waits for rest-1.
    fleet
        .wait_for(
            "the other clusters to soak midway-wait's candidate",
            DEADLINE,
            |j| {
                let now = fleet.now();
                others.iter().all(|c| {
                    j.soaked_at(c, "midway-wait", &wait.candidate, soak)
                        .is_some_and(|s| s <= now)
                })
            },
        )
        .await;
    fleet.wait_syncs(10).await;
    let (_, waiting) = admin.status("midway-wait").await;
    assert_eq!(waiting["phase"], "Progressing", "{waiting}");
    fleet.journal(|j| {
        for (name, _) in policies {
            assert!(
                j.latest_report("rest-1", name)
                    .is_some_and(|r| r.at < stopped_at),
                "{name}: rest-1 said nothing while away"
            );
        }
        assert!(
            j.reports_of("rest-1", "midway-skip", &skip.candidate)
                .next()
                .is_none(),
            "midway-skip finished without a word from rest-1 on its candidate"
        );
    });

    let back_at = fleet.now();
    fleet.set_stuck("rest-1", false);
    fleet.start("rest-1");
    let succeeded = admin.wait_phase("midway-wait", "Succeeded").await;
    let succeeded_at = fleet.now();
    assert_eq!(succeeded["candidateRevision"], wait.candidate_revision);
    wait_all_ready(&fleet, &all, "midway-wait", &wait.candidate).await;
    wait_all_ready(&fleet, &all, "midway-skip", &skip.candidate).await;
    wait_all_ready(&fleet, &all, "midway-fail", &fail.stable).await;
    fleet.journal(|j| {
        let soaked = j
            .soaked_at("rest-1", "midway-wait", &wait.candidate, soak)
            .expect("rest-1 soaked midway-wait's candidate");
        assert!(
            soaked >= back_at && soaked <= succeeded_at,
            "midway-wait: the run waited for rest-1 to come back and soak (soaked at {soaked:?}, \
             back at {back_at:?}, succeeded by {succeeded_at:?})"
        );
    });
    harness.shutdown().await;
}

// ---------------------------------------------------------------- kill -9

/// Environment of the server child process (see `kill_9_server_child_process`).
const CHILD_DATA_DIR: &str = "FLOTILLA_ROLLOUT_TEST_DATA_DIR";
const CHILD_LISTEN: &str = "FLOTILLA_ROLLOUT_TEST_LISTEN";
/// `Settings::offline_missed_intervals` of the child (default: the server's).
const CHILD_OFFLINE_MISSED: &str = "FLOTILLA_ROLLOUT_TEST_OFFLINE_MISSED_INTERVALS";
/// `Settings::flush_interval` of the child in milliseconds (default: the server's).
const CHILD_FLUSH_MILLIS: &str = "FLOTILLA_ROLLOUT_TEST_FLUSH_MILLIS";

/// The server the kill -9 tests start as a child process: this test executable run again with
/// only this test, which serves until killed. It makes the two calls `flotilla server` makes
/// (`flotilla_server::start`, then `run_until`); this crate's tests cannot name the CLI's binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the server process the kill_9_* tests start and kill; runs only as their child"]
async fn kill_9_server_child_process() {
    let (Ok(data_dir), Ok(listen)) = (std::env::var(CHILD_DATA_DIR), std::env::var(CHILD_LISTEN))
    else {
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = flotilla_server::start(ServerConfig {
        listen: listen.parse().expect("listen address"),
        data_dir: PathBuf::from(data_dir),
        store: Default::default(),
        settings: Settings {
            offline_missed_intervals: std::env::var(CHILD_OFFLINE_MISSED)
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(Settings::default().offline_missed_intervals),
            flush_interval: std::env::var(CHILD_FLUSH_MILLIS)
                .ok()
                .and_then(|n| n.parse().ok())
                .map_or(Settings::default().flush_interval, Duration::from_millis),
            ..Settings::default()
        },
    })
    .await
    .expect("start the server");
    server
        .run_until(std::future::pending())
        .await
        .expect("serve");
}

/// A server in a child process on a fixed port, killed with SIGKILL.
struct ServerProcess {
    child: Option<Child>,
    data_dir: PathBuf,
    listen: String,
    settings: ChildSettings,
}

/// Settings of the child server that differ from the defaults.
#[derive(Debug, Clone, Copy, Default)]
struct ChildSettings {
    offline_missed_intervals: Option<u32>,
    flush_millis: Option<u64>,
}

impl ServerProcess {
    fn start(data_dir: &Path) -> ServerProcess {
        ServerProcess::start_with(data_dir, ChildSettings::default())
    }

    fn start_with(data_dir: &Path, settings: ChildSettings) -> ServerProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut server = ServerProcess {
            child: None,
            data_dir: data_dir.to_path_buf(),
            listen: format!("127.0.0.1:{port}"),
            settings,
        };
        server.spawn();
        server
    }

    fn base(&self) -> String {
        format!("http://{}", self.listen)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.with_extension("log"))
            .expect("server log");
        let child = Command::new(std::env::current_exe().expect("the test executable"))
            .args([
                "--exact",
                "kill_9_server_child_process",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DATA_DIR, &self.data_dir)
            .env(CHILD_LISTEN, &self.listen)
            .env(
                CHILD_OFFLINE_MISSED,
                self.settings
                    .offline_missed_intervals
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
            )
            .env(
                CHILD_FLUSH_MILLIS,
                self.settings
                    .flush_millis
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn the server process");
        self.child = Some(child);
    }

    async fn wait_healthy(&self) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        let deadline = Instant::now() + DEADLINE;
        loop {
            let healthy = http
                .get(format!("{}/healthz", self.base()))
                .send()
                .await
                .is_ok_and(|r| r.status().as_u16() == 200);
            if healthy {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server process never answered /healthz"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown hook runs, nothing is flushed.
    fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill the server");
            child.wait().expect("reap the server");
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill_9();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_a_rolled_back_revision_held() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("server");
    let mut server = ServerProcess::start(&data_dir);
    server.wait_healthy().await;
    let admin_token = std::fs::read_to_string(data_dir.join(flotilla_server::ADMIN_TOKEN_FILE))
        .expect("the admin token file");
    let admin = Admin::at(&server.base(), admin_token.trim());
    let token = admin.token("fleet").await;
    let fleet = SimFleet::new(&server.base(), &token);
    fleet.add("canary-1", member("canary", "fail")).await;
    let rest = fleet.add_many("rest", 3, &member("main", "ok")).await;
    let all: Vec<String> = ["canary-1".to_string()].into_iter().chain(rest).collect();
    let rollout = json!({
        "waves": [ring_wave("canary", "canary", json!({"mandatory": true}))],
        "minSoak": "1s",
        "progressDeadline": "20s",
    });
    let stable = deploy_first(&admin, &fleet, &all, &bundle("web", "1", false, &rollout)).await;
    let bad = bundle("web", "2", true, &rollout);
    let run = start_run(&admin, &fleet, &bad, &stable).await;
    let before = admin.wait_phase("web", "RolledBack").await;
    wait_all_ready(&fleet, &all, "web", &stable).await;

    server.kill_9();
    server.spawn();
    server.wait_healthy().await;
    let after = admin.wait_phase("web", "RolledBack").await;
    assert_eq!(after["heldRevision"], run.candidate_revision, "{after}");
    assert_eq!(
        after["reason"], before["reason"],
        "the reason survives the restart"
    );
    let rewritten_at = fleet.now();
    admin.apply(&bad).await;
    fleet.wait_syncs(10).await;
    let (_, settled) = admin.status("web").await;
    assert_eq!(settled["phase"], "RolledBack", "{settled}");
    fleet.journal(|j| {
        let moved = j.receipts_after("web", rewritten_at);
        assert!(
            moved.is_empty(),
            "after a restart, rewriting the held revision handed it out again: {moved:?}"
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_rollback_resumes_it_with_no_cluster_sent_back_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("server");
    let mut server = ServerProcess::start(&data_dir);
    server.wait_healthy().await;
    let admin_token = std::fs::read_to_string(data_dir.join(flotilla_server::ADMIN_TOKEN_FILE))
        .expect("the admin token file");
    let admin = Admin::at(&server.base(), admin_token.trim());
    let token = admin.token("fleet").await;
    let fleet = SimFleet::new(&server.base(), &token);
    // The canary is a share wave sorted by the `order` label: canary-1..3 start one after
    // another and soak, then canary-4 fails, and the rollback sends them back one at a time.
    let mut canary = Vec::new();
    for i in 1..=4 {
        let name = format!("canary-{i}");
        let sim = if i == 4 { "fail" } else { "ok" };
        fleet
            .add(&name, labels(&[("order", &i.to_string()), ("sim", sim)]))
            .await;
        canary.push(name);
    }
    let rest = fleet
        .add_many("rest", 3, &labels(&[("order", "9"), ("sim", "ok")]))
        .await;
    let all: Vec<String> = canary.iter().chain(&rest).cloned().collect();
    let rollout = json!({
        "waves": [
            {"name": "canary", "clusters": 4, "sortBy": "order", "maxConcurrency": 1},
            {"name": "rest", "clusters": "100%"},
        ],
        "minSoak": "1s",
        "progressDeadline": "20s",
    });
    let stable = deploy_first(&admin, &fleet, &all, &bundle("web", "1", false, &rollout)).await;
    let run = start_run(&admin, &fleet, &bundle("web", "2", true, &rollout), &stable).await;
    // Once canary-1..3 run the candidate, their agents stop applying anything: sent back, the
    // first of them stays reverting (it never reports the stable revision) until the kill.
    let ok = &canary[..3];
    fleet
        .wait_for("canary-1..3 to report the candidate Ready", DEADLINE, |j| {
            ok.iter().all(|c| j.reports_ready(c, "web", &run.candidate))
        })
        .await;
    for cluster in ok {
        fleet.set_stuck(cluster, true);
    }
    admin.wait_phase("web", "RollingBack").await;
    fleet
        .wait_for("the rollback to send a canary back", DEADLINE, |j| {
            ok.iter()
                .any(|c| j.holds(c, "web") == Some(stable.as_str()))
        })
        .await;
    let sent_back_before = fleet.journal(|j| {
        ok.iter()
            .filter(|c| j.holds(c, "web") == Some(stable.as_str()))
            .count()
    });
    assert!(
        sent_back_before < 3,
        "the kill came too late to be mid-rollback"
    );
    server.kill_9();
    let killed_at = fleet.now();
    server.spawn();
    server.wait_healthy().await;
    for cluster in ok {
        fleet.set_stuck(cluster, false);
    }
    let done = admin.wait_phase("web", "RolledBack").await;
    assert_eq!(done["heldRevision"], run.candidate_revision, "{done}");
    wait_all_ready(&fleet, &all, "web", &stable).await;
    fleet.journal(|j| {
        for cluster in &canary {
            let started = j.receipts_of(cluster, "web", &run.candidate);
            assert_eq!(started.len(), 1, "{cluster} was started {started:?}");
            let back: Vec<Duration> = j
                .receipts_of(cluster, "web", &stable)
                .into_iter()
                .filter(|at| *at > started[0])
                .collect();
            assert_eq!(
                back.len(),
                1,
                "{cluster} was sent back at {back:?} (killed at {killed_at:?})"
            );
        }
        assert!(
            j.receivers("web", &run.candidate)
                .is_disjoint(&names(&rest)),
            "no cluster past the canary got the failed revision"
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_offline_clusters_under_their_policy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("server");
    // Clusters tell the server a 1 s interval: Offline after 2 s without a sync. Soft state
    // (canary-away being Offline) is written within 50 ms, so the restarted server loads it.
    let settings = ChildSettings {
        offline_missed_intervals: Some(1),
        flush_millis: Some(50),
    };
    let mut server = ServerProcess::start_with(&data_dir, settings);
    server.wait_healthy().await;
    let admin_token = std::fs::read_to_string(data_dir.join(flotilla_server::ADMIN_TOKEN_FILE))
        .expect("the admin token file");
    let admin = Admin::at(&server.base(), admin_token.trim());
    let token = admin.token("fleet").await;
    let fleet = SimFleet::new(&server.base(), &token);
    let online_canary = fleet.add_many("canary", 2, &member("canary", "ok")).await;
    fleet.add("canary-away", member("canary", "ok")).await;
    let rest = fleet.add_many("rest", 2, &member("main", "ok")).await;
    let all: Vec<String> = online_canary
        .iter()
        .chain(&rest)
        .cloned()
        .chain(["canary-away".to_string()])
        .collect();
    let deadline = Duration::from_secs(5);
    let rollout = |policy: &str| {
        json!({
            // A long canary soak: the kill comes while the canary soaks, canary-away started
            // while Offline (skipped, or waited for).
            "waves": [ring_wave("canary", "canary", json!({"minSoak": "3s"}))],
            "minSoak": "1s",
            "progressDeadline": "5s",
            "offline": policy,
        })
    };
    let policies = [("offline-skip", "skip"), ("offline-wait", "wait")];
    let mut stables = Vec::new();
    for (name, policy) in policies {
        let document = bundle(name, "1", false, &rollout(policy));
        stables.push(deploy_first(&admin, &fleet, &all, &document).await);
    }
    fleet.stop("canary-away");
    admin.wait_offline("canary-away").await;
    let mut runs = Vec::new();
    for ((name, policy), stable) in policies.iter().zip(&stables) {
        let document = bundle(name, "2", false, &rollout(policy));
        runs.push(start_run(&admin, &fleet, &document, stable).await);
    }
    let [skip, wait] = &runs[..] else {
        unreachable!()
    };
    fleet
        .wait_for(
            "the online canaries to report both candidates Ready",
            DEADLINE,
            |j| {
                online_canary.iter().all(|c| {
                    j.reports_ready(c, "offline-skip", &skip.candidate)
                        && j.reports_ready(c, "offline-wait", &wait.candidate)
                })
            },
        )
        .await;
    server.kill_9();
    server.spawn();
    server.wait_healthy().await;
    let restarted_at = fleet.now();

    // skip: the run finishes without canary-away.
    let skipped = admin
        .wait_status("offline-skip", "the run to end", |s| {
            s["phase"] != "Progressing"
        })
        .await;
    assert_eq!(
        skipped["phase"], "Succeeded",
        "offline-skip: after the restart, canary-away (Offline, skipped) is waited for and \
         failed by progressDeadline: {skipped}"
    );
    // wait: no deadline runs while canary-away is away, restart or not.
    while fleet.now() < restarted_at + deadline + Duration::from_secs(2) {
        let (_, status) = admin.status("offline-wait").await;
        assert_eq!(
            status["phase"], "Progressing",
            "offline-wait: canary-away is waited for, without a deadline while away: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fleet.journal(|j| {
        assert!(
            j.first_receipt("canary-away", "offline-skip", &skip.candidate)
                .is_none()
        );
        assert!(
            j.receivers("offline-wait", &wait.candidate)
                .is_disjoint(&names(&rest)),
            "offline-wait: nothing past the canary while canary-away is away"
        );
    });
    fleet.start("canary-away");
    admin.wait_phase("offline-wait", "Succeeded").await;
    wait_all_ready(&fleet, &all, "offline-wait", &wait.candidate).await;
    wait_all_ready(&fleet, &all, "offline-skip", &skip.candidate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_rollout_resumes_with_no_cluster_skipped_or_started_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("server");
    let mut server = ServerProcess::start(&data_dir);
    server.wait_healthy().await;
    let admin_token = std::fs::read_to_string(data_dir.join(flotilla_server::ADMIN_TOKEN_FILE))
        .expect("the admin token file");
    let admin = Admin::at(&server.base(), admin_token.trim());
    let token = admin.token("fleet").await;
    let fleet = SimFleet::new(&server.base(), &token);
    let canary = fleet.add_many("canary", 2, &member("canary", "ok")).await;
    let rest = fleet.add_many("rest", 10, &member("main", "ok")).await;
    let all: Vec<String> = canary.iter().chain(&rest).cloned().collect();
    let soak = Duration::from_secs(1);
    let rollout = json!({
        "waves": [
            ring_wave("canary", "canary", json!({"maxConcurrency": 2})),
            {"name": "rest", "clusters": "100%", "maxConcurrency": 2},
        ],
        "minSoak": "1s",
        "progressDeadline": "20s",
    });
    let stable = deploy_first(&admin, &fleet, &all, &bundle("web", "1", false, &rollout)).await;
    let run = start_run(
        &admin,
        &fleet,
        &bundle("web", "2", false, &rollout),
        &stable,
    )
    .await;

    // Mid-wave: some of the second wave started and soaking (a Ready report on the candidate,
    // its soak only in the server's memory), most not started.
    fleet
        .wait_for("the second wave to be soaking", DEADLINE, |j| {
            rest.iter()
                .any(|c| j.first_ready(c, "web", &run.candidate).is_some())
        })
        .await;
    // A cluster joins after its wave (the canary) is passed: under `lateJoiners: stable` it keeps
    // the stable revision until the run ends, restart or not.
    fleet.add("late-canary", member("canary", "ok")).await;
    let late = ["late-canary".to_string()];
    wait_all_ready(&fleet, &late, "web", &run.stable).await;
    fleet.wait_syncs(3).await;
    server.kill_9();
    let killed_at = fleet.now();
    let started_before = fleet.journal(|j| j.receivers("web", &run.candidate));
    assert!(
        started_before.len() < all.len(),
        "the kill came too late to be mid-rollout: {started_before:?}"
    );
    server.spawn();
    server.wait_healthy().await;

    let done = admin.wait_phase("web", "Succeeded").await;
    assert_eq!(done["candidateRevision"], run.candidate_revision, "{done}");
    let everyone: Vec<String> = all.iter().chain(&late).cloned().collect();
    wait_all_ready(&fleet, &everyone, "web", &run.candidate).await;
    fleet.journal(|j| {
        let rest_soaked = all_soaked_at(j, "web", &rest, &run.candidate, soak);
        let late_started = j
            .first_receipt("late-canary", "web", &run.candidate)
            .expect("late-canary got the new stable revision");
        assert!(
            late_started >= rest_soaked,
            "late-canary (lateJoiners: stable, joined before the kill) got the candidate at \
             {late_started:?}, while the run was still going (its last wave soaked at \
             {rest_soaked:?}; killed at {killed_at:?})"
        );
        for cluster in &everyone {
            let receipts = j.receipts_of(cluster, "web", &run.candidate);
            assert_eq!(
                receipts.len(),
                1,
                "{cluster} was handed the candidate {} times (at {receipts:?}; killed at {killed_at:?})",
                receipts.len()
            );
            let back = j
                .receipts_of(cluster, "web", &run.stable)
                .into_iter()
                .filter(|at| *at > receipts[0])
                .collect::<Vec<_>>();
            assert!(back.is_empty(), "{cluster} was sent back to the stable revision at {back:?}");
        }
        let canary_soaked = all_soaked_at(j, "web", &canary, &run.candidate, soak);
        let rest_started = first_receipt_among(j, "web", &rest, &run.candidate).expect("rest");
        assert!(rest_started >= canary_soaked, "the second wave started before the canary soaked");
        let (_, not_soaked) = peak_in_flight(j, "web", &rest, &run.candidate, soak);
        assert!(
            not_soaked <= 2,
            "the second wave (maxConcurrency 2) had {not_soaked} clusters started and not done at once"
        );
    });
}
