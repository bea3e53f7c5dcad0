//! The agent loop: register, sync on a jittered interval, fetch content by digest, apply and
//! prune through the driver, report, and keep enforcing from the state dir while the server is
//! unreachable.

use std::{collections::BTreeMap, time::Duration};

use flotilla_api::{
    BundleState,
    agent::{BundleReport, DesiredBundle, RegisterRequest},
};
use flotilla_core::{
    customize::{customize, is_cluster_scoped},
    digest::verify_content,
    failover::retry_delay_millis,
    sync::{Backoff, Plan, SyncMachine, jittered_millis},
};
use rand::RngExt;
use serde_json::Value;

use crate::{
    BUNDLE_LABEL, DEPLOYMENT_ANNOTATION, DIGEST_ANNOTATION,
    client::{ClientError, ServerClient},
    driver::ClusterDriver,
    state_dir::{CachedDesired, Identity, StateDir},
};

/// Jitter spread of the sync interval, in percent either way.
const INTERVAL_JITTER_PERCENT: u64 = 10;
/// Retry backoff: from 1 s, doubling, capped at 2 minutes.
const BACKOFF_BASE_MILLIS: u64 = 1_000;
const BACKOFF_CAP_MILLIS: u64 = 120_000;
/// How long a stop waits for the sync or apply in progress to reach its next pause before the
/// agent exits anyway: an apply is not cut in half, and it stays well inside Kubernetes'
/// default 30 s grace period.
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub server: String,
    pub token: Option<String>,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub interval: Duration,
    /// How often live objects are compared with their manifests (jittered).
    pub drift_interval: Duration,
}

/// The default drift check interval.
pub const DEFAULT_DRIFT_INTERVAL: Duration = Duration::from_secs(120);

struct Agent<D> {
    config: AgentConfig,
    client: ServerClient,
    state: StateDir,
    driver: D,
    machine: SyncMachine,
    credential: Option<String>,
    client_id: String,
    /// Bundles whose deployment could not be applied at all (bad content or customization).
    failures: BTreeMap<String, BundleReport>,
    /// When live objects are next compared with their manifests.
    next_drift_check: tokio::time::Instant,
}

/// Runs the agent until `shutdown` resolves; then it finishes the pass in progress (at most
/// [`STOP_GRACE`]) and returns `Ok`.
pub async fn run<D: ClusterDriver>(
    config: AgentConfig,
    state_dir: &std::path::Path,
    driver: D,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let state = StateDir::open(state_dir)?;
    let identity = state.identity()?;
    let (client_id, credential) = match identity {
        // The same fleet if any server URL is shared: adding or removing a replica keeps the
        // agent's registration.
        Some(identity)
            if identity.name == config.name
                && crate::client::server_urls(&identity.server)
                    .iter()
                    .any(|url| crate::client::server_urls(&config.server).contains(url)) =>
        {
            (identity.client_id, identity.credential)
        }
        _ => (hex::encode(rand::rng().random::<[u8; 16]>()), None),
    };
    let machine = match state.desired()? {
        Some(cached) => SyncMachine::resume(cached.etag, cached.bundles),
        None => SyncMachine::new(),
    };
    let mut agent = Agent {
        client: ServerClient::new(&config.server)?,
        config,
        state,
        driver,
        machine,
        credential,
        client_id,
        failures: BTreeMap::new(),
        next_drift_check: tokio::time::Instant::now(),
    };
    let (stop, mut stopping) = tokio::sync::watch::channel(false);
    let result = tokio::select! {
        result = agent.run_loop(&mut stopping) => result,
        () = async {
            shutdown.await;
            tracing::info!("stopping after the pass in progress");
            let _ = stop.send(true);
            tokio::time::sleep(STOP_GRACE).await;
            tracing::warn!(grace = ?STOP_GRACE, "the pass in progress did not finish in time; stopping anyway");
        } => Ok(()),
    };
    tracing::info!("agent stopped");
    result
}

/// Waits `delay` unless a stop comes first; true when stopping.
async fn pause(delay: Duration, stopping: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        () = tokio::time::sleep(delay) => false,
        _ = stopping.wait_for(|stop| *stop) => true,
    };
    stopped || *stopping.borrow()
}

impl<D: ClusterDriver> Agent<D> {
    async fn run_loop(
        &mut self,
        stopping: &mut tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let mut backoff = Backoff::new(BACKOFF_BASE_MILLIS, BACKOFF_CAP_MILLIS);
        // Enforce the cached desired set before talking to anyone: a restart while the server is
        // down must not leave the cluster unmanaged.
        self.enforce().await;
        self.refresh().await;
        loop {
            if *stopping.borrow() {
                return Ok(());
            }
            if self.credential.is_none() {
                match self.register().await {
                    Ok(()) => backoff.reset(),
                    // Retrying cannot help: say why and stop (a supervisor shows the exit).
                    Err(error) if error.is::<RegistrationImpossible>() => return Err(error),
                    Err(error) => {
                        let asked = error
                            .downcast_ref::<ClientError>()
                            .map_or(Duration::ZERO, ClientError::retry_after);
                        let delay =
                            retry_delay_millis(&mut backoff, asked.as_millis() as u64, entropy());
                        tracing::warn!(%error, retry_in_ms = delay, "registration failed");
                        if pause(Duration::from_millis(delay), stopping).await {
                            return Ok(());
                        }
                        continue;
                    }
                }
            }
            match self.sync_once().await {
                Ok(again) => {
                    backoff.reset();
                    if again {
                        continue;
                    }
                    let delay = jittered_millis(
                        self.config.interval.as_millis() as u64,
                        INTERVAL_JITTER_PERCENT,
                        entropy(),
                    );
                    if pause(Duration::from_millis(delay), stopping).await {
                        return Ok(());
                    }
                }
                Err(error) => {
                    self.machine.on_failure();
                    let delay = retry_delay_millis(
                        &mut backoff,
                        error.retry_after().as_millis() as u64,
                        entropy(),
                    );
                    match &error {
                        ClientError::Unauthorized(message) => {
                            tracing::warn!(%message, "credential refused; registering again");
                            self.credential = None;
                        }
                        ClientError::Busy(_) => {}
                        ClientError::Rejected { .. } => {
                            tracing::error!(%error, "server rejected the sync");
                        }
                        ClientError::Unreachable { .. } => {
                            tracing::warn!(%error, retry_in_ms = delay, "server unreachable; enforcing the cached desired set");
                            self.enforce().await;
                            self.refresh().await;
                        }
                    }
                    if pause(Duration::from_millis(delay), stopping).await {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Registers with the registration token. No token, or one the server refuses (401/403 or
    /// another 4xx), is [`RegistrationImpossible`]: retrying the same request cannot help.
    /// Network errors, 5xx and 429 are returned as they are, to be retried.
    async fn register(&mut self) -> anyhow::Result<()> {
        let Some(token) = self.config.token.clone() else {
            return Err(RegistrationImpossible(format!(
                "cluster {} has no usable credential (none in the state dir, or the server \
                 refused it) and no registration token to register with; pass --token or set \
                 FLOTILLA_AGENT_TOKEN",
                self.config.name
            ))
            .into());
        };
        let facts = self.driver.facts().await;
        let response = self
            .client
            .register(&RegisterRequest {
                token,
                name: self.config.name.clone(),
                client_id: self.client_id.clone(),
                labels: self.config.labels.clone(),
                facts,
            })
            .await
            .map_err(|error| match error {
                ClientError::Unauthorized(message) | ClientError::Rejected { message, .. } => {
                    anyhow::Error::from(RegistrationImpossible(format!(
                        "the server refused to register cluster {}: {message}",
                        self.config.name
                    )))
                }
                retry => retry.into(),
            })?;
        self.state.save_identity(&Identity {
            server: self.config.server.clone(),
            name: response.name.clone(),
            client_id: self.client_id.clone(),
            credential: Some(response.credential.clone()),
        })?;
        self.credential = Some(response.credential);
        tracing::info!(cluster = %response.name, "registered");
        Ok(())
    }

    /// One sync; returns whether to sync again right away (to report what just changed).
    async fn sync_once(&mut self) -> Result<bool, ClientError> {
        let credential = self.credential.clone().unwrap_or_default();
        let facts = self.driver.facts().await;
        self.refresh().await;
        let reports = self.reports().await;
        let request = self.machine.request(&facts, &reports);
        let mut reply = self.client.sync(&credential, &request).await?;
        if let Some(reply) = &mut reply {
            for (digest, content) in std::mem::take(&mut reply.contents) {
                self.accept_inline_content(&digest, content.bytes());
            }
        }
        let outcome = self.machine.on_reply(reply);
        if outcome.desired_changed {
            let cached = CachedDesired {
                etag: self.machine.etag().unwrap_or_default().to_string(),
                bundles: self.machine.desired().to_vec(),
            };
            if let Err(error) = self.state.save_desired(&cached) {
                tracing::warn!(%error, "could not cache the desired set");
            }
        }
        let changed = self.enforce().await;
        Ok(changed || outcome.sync_again)
    }

    /// Caches content that came inside a sync reply, if it matches its digest (otherwise it is
    /// fetched like any other).
    fn accept_inline_content(&self, digest: &str, bytes: &[u8]) {
        if !verify_content(digest, bytes) {
            tracing::warn!(%digest, "inlined content does not match its digest; will fetch it");
            return;
        }
        if let Err(error) = self.state.save_content(digest, bytes) {
            tracing::warn!(%error, "could not cache content");
        }
    }

    /// Re-reads health, and compares with the manifests when a drift check is due.
    async fn refresh(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let check_drift = now >= self.next_drift_check;
        if check_drift {
            let delay = jittered_millis(
                self.config.drift_interval.as_millis() as u64,
                INTERVAL_JITTER_PERCENT,
                entropy(),
            );
            self.next_drift_check = now + Duration::from_millis(delay);
        }
        self.driver.refresh(check_drift).await
    }

    async fn reports(&mut self) -> Vec<BundleReport> {
        let mut reports: BTreeMap<String, BundleReport> = self
            .driver
            .reports()
            .await
            .into_iter()
            .map(|r| (r.bundle.clone(), r))
            .collect();
        for (name, failure) in &self.failures {
            reports.insert(name.clone(), failure.clone());
        }
        reports.into_values().collect()
    }

    /// Brings the cluster to the desired set; returns whether anything changed on the cluster or
    /// in what the agent reports (a transient failure changes nothing and is retried later).
    async fn enforce(&mut self) -> bool {
        let mut applied = self.driver.applied();
        self.failures
            .retain(|name, _| self.machine.desired().iter().any(|b| &b.name == name));
        for (name, failure) in &self.failures {
            applied.insert(name.clone(), failure.deployment.clone());
        }
        let Plan { apply, remove } = self.machine.plan(&applied);
        if apply.is_empty() && remove.is_empty() {
            return false;
        }
        let mut changed = false;
        for name in remove {
            changed |= self.failures.remove(&name).is_some();
            if let Err(error) = self.driver.remove(&name).await {
                tracing::warn!(bundle = %name, %error, "could not remove bundle");
            } else {
                changed = true;
                tracing::info!(bundle = %name, "removed bundle");
            }
        }
        for bundle in apply {
            match self.manifests(&bundle).await {
                Ok(manifests) => {
                    self.failures.remove(&bundle.name);
                    self.driver.apply(&bundle, manifests).await;
                    changed = true;
                    tracing::info!(bundle = %bundle.name, deployment = %bundle.deployment, "applied bundle");
                }
                Err(Failure::Permanent(message)) => {
                    tracing::warn!(bundle = %bundle.name, %message, "cannot apply bundle");
                    changed = true;
                    self.failures
                        .insert(bundle.name.clone(), failed_report(&bundle, message));
                }
                Err(Failure::Transient(message)) => {
                    tracing::warn!(bundle = %bundle.name, %message, "content unavailable; will retry");
                }
            }
        }
        let keep: Vec<&str> = self
            .machine
            .desired()
            .iter()
            .map(|b| b.digest.as_str())
            .collect();
        self.state.prune_content(&keep);
        changed
    }

    /// The bundle's manifests, customized for this cluster and stamped with ownership.
    async fn manifests(&self, bundle: &DesiredBundle) -> Result<Vec<Value>, Failure> {
        let bytes = match self.state.content(&bundle.digest) {
            Some(bytes) => bytes,
            None => {
                let credential = self
                    .credential
                    .as_deref()
                    .ok_or_else(|| Failure::Transient("not registered yet".into()))?;
                let bytes = self
                    .client
                    .content(credential, &bundle.digest)
                    .await
                    .map_err(|e| Failure::Transient(e.to_string()))?;
                if !verify_content(&bundle.digest, &bytes) {
                    return Err(Failure::Transient(format!(
                        "content for {} does not match its digest",
                        bundle.digest
                    )));
                }
                if let Err(error) = self.state.save_content(&bundle.digest, &bytes) {
                    tracing::warn!(%error, "could not cache content");
                }
                bytes
            }
        };
        bundle_manifests(bundle, &bytes).map_err(Failure::Permanent)
    }
}

/// A bundle's verified content as the manifests to apply on this cluster: parsed, customized by
/// the bundle's options (placeholders, patches, namespace, labels) and stamped with ownership.
/// An error is permanent for this deployment (the agent reports the bundle as Error with it,
/// see [`failed_report`]). The simulator runs the same function, so it fails where agents do.
pub fn bundle_manifests(bundle: &DesiredBundle, content: &[u8]) -> Result<Vec<Value>, String> {
    let manifests: Vec<Value> = serde_json::from_slice(content)
        .map_err(|e| format!("bundle content is not a manifest list: {e}"))?;
    let mut customized = customize(&manifests, &bundle.options, &|api_version, kind| {
        !is_cluster_scoped(api_version, kind)
    })
    .map_err(|e| e.to_string())?;
    for manifest in &mut customized {
        stamp(manifest, bundle);
    }
    Ok(customized)
}

/// The report of a bundle whose deployment cannot be applied at all (bad content or
/// customization, see [`bundle_manifests`]).
pub fn failed_report(bundle: &DesiredBundle, message: String) -> BundleReport {
    BundleReport {
        bundle: bundle.name.clone(),
        deployment: bundle.deployment.clone(),
        state: BundleState::Error,
        message: Some(message),
        problems: Vec::new(),
        more_problems: 0,
    }
}

/// The agent cannot register and retrying will not change that (no token, or the server refused
/// it): the agent stops with this error instead of retrying forever.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RegistrationImpossible(pub String);

enum Failure {
    /// Retrying may help (the content could not be fetched).
    Transient(String),
    /// Retrying the same deployment will not help.
    Permanent(String),
}

/// Marks an object as owned by a bundle deployment.
pub fn stamp(manifest: &mut Value, bundle: &DesiredBundle) {
    let Some(metadata) = manifest.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let labels = metadata
        .entry("labels")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(labels) = labels.as_object_mut() {
        labels.insert(BUNDLE_LABEL.into(), Value::String(bundle.name.clone()));
    }
    let annotations = metadata
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(annotations) = annotations.as_object_mut() {
        annotations.insert(
            DEPLOYMENT_ANNOTATION.into(),
            Value::String(bundle.deployment.clone()),
        );
        annotations.insert(
            DIGEST_ANNOTATION.into(),
            Value::String(bundle.digest.clone()),
        );
    }
}

fn entropy() -> u64 {
    rand::rng().random()
}
