//! Git sources: a worker that polls each `GitRepo` on its (jittered) interval or at once when a
//! webhook or a spec change asks, resolves the wanted commit with `ls-remote`, and only when it
//! is new (or the spec changed) fetches it, renders every deployable folder with
//! `flotilla_render` and commits the resulting bundles and the repo's status in one store commit.
//!
//! Rules it keeps:
//! - *An unchanged render writes nothing:* a bundle whose rendered spec equals the stored one is
//!   not rewritten, so a commit that changes nothing rendered does not move a digest or wake a
//!   cluster.
//! - *The last good revision keeps serving:* a failed fetch or a folder that fails to render
//!   leaves the bundles as they were and puts the error on the GitRepo status (per folder where
//!   it is one folder's).
//! - *Failing repos back off:* each consecutive failure doubles the wait (jittered), up to an
//!   hour; success resets it.
//! - *Repos do not poll in lockstep:* the first poll of each repo is spread over its interval.

pub mod fetch;
pub mod schedule;
pub mod webhook;

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    time::{Duration, Instant},
};

use flotilla_api::{Bundle, GitRepoBundle, GitRepoSpec, GitRepoStatus, Kind, ObjectMeta};
use flotilla_core::sync::Backoff;
use rand::RngExt;

use crate::{
    fleet::Fleet,
    state::{SharedState, now_seconds, rfc3339},
    writes::{self, Mode, bundles::PreparedBundle, sources::Render},
};
use fetch::{Credentials, Wanted};

/// Label on every bundle a GitRepo renders, naming the repo.
pub const REPO_LABEL: &str = "flotilla.dev/gitrepo";
/// Annotation naming the folder a bundle was rendered from.
pub const PATH_ANNOTATION: &str = "flotilla.dev/gitrepo-path";
/// Repositories fetched and rendered at the same time.
const PARALLEL: usize = 4;
/// Longest wait between retries of a failing repository.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The worker: runs due repositories (a few at a time) and sleeps until the next is due or it
/// is woken.
pub async fn worker(state: SharedState) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let now = Instant::now();
        let mut next = now + Duration::from_secs(60);
        let mut ready = Vec::new();
        // Scheduled polls are singleton work; fetches asked for here run regardless.
        let leader = state.lease.is_held();
        if !leader {
            next = now + Duration::from_secs(1);
        }
        {
            let fleet = state.fleet.read();
            let requested = state.gitops.requested.lock();
            let mut due = state.gitops.due.lock();
            due.retain(|name, _| fleet.gitrepos().contains_key(name));
            let running = state.gitops.running.lock();
            for (name, repo) in fleet.gitrepos() {
                if repo.spec.paused {
                    continue;
                }
                let at = *due.entry(name.clone()).or_insert_with(|| {
                    // First poll after start: anywhere within one interval, so repositories
                    // spread out; a repo never fetched (or whose spec moved) goes at once.
                    if repo.status.commit.is_none()
                        || repo.status.observed_generation != repo.metadata.generation
                    {
                        now
                    } else {
                        let interval = flotilla_core::documents::poll_interval(&repo.spec);
                        now + interval.mul_f64(rand::rng().random_range(0.0..1.0))
                    }
                });
                if running.contains(name) || !(leader || requested.contains(name)) {
                    continue;
                }
                if at <= now {
                    ready.push((at, name.clone()));
                } else {
                    next = next.min(at);
                }
            }
        }
        // Longest-waiting first, so a busy server never starves repos late in the alphabet.
        ready.sort();
        for (_, name) in ready {
            if tasks.len() >= PARALLEL {
                break;
            }
            state.gitops.running.lock().insert(name.clone());
            state.gitops.requested.lock().remove(&name);
            let state = state.clone();
            tasks.spawn(async move {
                // Leaves `running` even if the run panics, so the repo is polled again.
                let guard = Running {
                    state: state.clone(),
                    name: name.clone(),
                };
                let started = Instant::now();
                let outcome = sync_repo(&state, &name).await;
                // Reschedule before leaving `running`: the worker must not see the old due time
                // of a repo that is no longer running and start it again.
                reschedule(&state, &name, started, outcome);
                drop(guard);
            });
        }
        let sleep = next.saturating_duration_since(Instant::now());
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = state.gitops.wake.notified() => {}
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

/// Marks a repository as running for as long as it lives.
struct Running {
    state: SharedState,
    name: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.state.gitops.running.lock().remove(&self.name);
        self.state.gitops.wake.notify_one();
    }
}

/// How one run went, for scheduling.
enum Outcome {
    Ok,
    Failed,
    Gone,
}

fn reschedule(state: &SharedState, name: &str, started: Instant, outcome: Outcome) {
    let interval = {
        let fleet = state.fleet.read();
        match fleet.gitrepos().get(name) {
            Some(repo) => flotilla_core::documents::poll_interval(&repo.spec),
            None => return,
        }
    };
    let wait = match outcome {
        Outcome::Gone => return,
        Outcome::Ok => {
            state.gitops.backoff.lock().remove(name);
            // ±10 % jitter keeps repositories with equal intervals apart.
            interval.mul_f64(rand::rng().random_range(0.9..1.1))
        }
        Outcome::Failed => {
            let mut backoff = state.gitops.backoff.lock();
            let backoff = backoff.entry(name.to_string()).or_insert_with(|| {
                Backoff::new(
                    interval.as_millis() as u64,
                    MAX_BACKOFF.max(interval).as_millis() as u64,
                )
            });
            Duration::from_millis(backoff.next_delay_millis(rand::rng().random()))
        }
    };
    {
        let mut due = state.gitops.due.lock();
        let entry = due.entry(name.to_string()).or_insert(started);
        // A fetch asked for during the run (webhook, spec change) stays due; otherwise the
        // next poll is one interval (or one backoff) away.
        if *entry <= started {
            *entry = Instant::now() + wait;
        }
    }
    let next_fetch = rfc3339(now_seconds() + wait.as_secs());
    state
        .fleet
        .write()
        .edit_gitrepo_schedule(name, |status| status.next_fetch = Some(next_fetch));
    state.gitops.wake.notify_one();
}

/// What a run works from: a snapshot of the repo's spec and status.
struct Snapshot {
    spec: GitRepoSpec,
    generation: u64,
    status: GitRepoStatus,
    credentials: Result<Option<Credentials>, String>,
}

fn snapshot(state: &SharedState, name: &str) -> Option<Snapshot> {
    let fleet = state.fleet.read();
    let repo = fleet.gitrepos().get(name)?;
    let credentials = match &repo.spec.client_secret_name {
        None => Ok(None),
        Some(secret_name) => match fleet.secrets().get(secret_name) {
            None => Err(format!(
                "Secret {secret_name:?} (spec.clientSecretName) does not exist; create it"
            )),
            Some(secret) => {
                let data = &secret.spec.string_data;
                let get = |key: &str| data.get(key).cloned().unwrap_or_default();
                match secret.spec.secret_type.as_str() {
                    "basic-auth" => Ok(Some(Credentials::Basic {
                        username: get("username"),
                        password: get("password"),
                    })),
                    "ssh-auth" => Ok(Some(Credentials::Ssh {
                        private_key: get("ssh-privatekey"),
                        known_hosts: get("known_hosts"),
                    })),
                    other => Err(format!(
                        "Secret {secret_name:?} has type {other}; git credentials need basic-auth or ssh-auth"
                    )),
                }
            }
        },
    };
    Some(Snapshot {
        spec: repo.spec.clone(),
        generation: repo.metadata.generation,
        status: repo.status.clone(),
        credentials,
    })
}

/// One poll of one repository.
async fn sync_repo(state: &SharedState, name: &str) -> Outcome {
    let Some(snap) = snapshot(state, name) else {
        return Outcome::Gone;
    };
    let wanted = match (&snap.spec.revision, &snap.spec.branch) {
        (Some(revision), _) => Wanted::Revision(revision.clone()),
        (None, Some(branch)) => Wanted::Branch(branch.clone()),
        (None, None) => Wanted::Branch("main".into()),
    };
    let result = async {
        let credentials = snap.credentials.clone().map_err(anyhow::Error::msg)?;
        let commit = state
            .gitops
            .fetcher
            .resolve(&snap.spec.repo, &wanted, credentials.as_ref())
            .await?;
        // Same commit and spec, and every folder rendered last time: nothing to do. A failed
        // fetch in between does not force a re-render; a folder that failed is retried.
        let current = snap.status.commit.as_deref() == Some(commit.as_str())
            && snap.status.observed_generation == snap.generation
            && snap.status.bundles.iter().all(|b| b.error.is_none());
        if current {
            return Ok(None);
        }
        let fetch_started = Instant::now();
        let tree = state
            .gitops
            .fetcher
            .checkout(&snap.spec.repo, &commit, &wanted, credentials.as_ref())
            .await?;
        let paths = snap.spec.paths.clone();
        let tools = state.gitops.tools.clone();
        let fetched = fetch_started.elapsed();
        let render_started = Instant::now();
        let rendered = tokio::task::spawn_blocking(move || {
            let root = tree.path();
            let folders = flotilla_render::bundle_folders(root, &paths)
                .map_err(|error| anyhow::anyhow!("{error}"))?;
            let rendered: Vec<Rendered> = folders
                .into_iter()
                .map(|folder| {
                    let result =
                        flotilla_render::render_folder(root, &folder, &tools).map_err(|error| {
                            Failed {
                                // The name the folder claims, so its status names its bundle.
                                declared_name: flotilla_render::declared_name(root, &folder),
                                error: error.to_string(),
                            }
                        });
                    (folder, result)
                })
                .collect();
            anyhow::Ok(rendered)
        })
        .await
        .map_err(|e| anyhow::anyhow!("render task: {e}"))??;
        tracing::debug!(
            repo = %name,
            fetch_ms = fetched.as_millis() as u64,
            render_ms = render_started.elapsed().as_millis() as u64,
            "git source fetched and rendered"
        );
        anyhow::Ok(Some((commit, rendered)))
    }
    .await;
    match result {
        Ok(None) => {
            if snap.status.error.is_some() || snap.status.failures > 0 {
                // The repository is reachable again: clear the fetch error, durably.
                clear_failure(state, name, &snap).await;
            }
            state.fleet.write().edit_gitrepo_schedule(name, |status| {
                status.last_fetched = Some(rfc3339(now_seconds()));
            });
            Outcome::Ok
        }
        // A folder that fails to render is the commit's problem, not the repository's: the
        // other folders keep following at the normal interval, no backoff.
        Ok(Some((commit, rendered))) => match publish(state, name, &snap, commit, rendered).await {
            Ok(_) => Outcome::Ok,
            Err(error) => {
                record_failure(state, name, &snap, format!("{error}")).await;
                Outcome::Failed
            }
        },
        Err(error) => {
            record_failure(state, name, &snap, format!("{error:#}")).await;
            Outcome::Failed
        }
    }
}

/// One folder's rendering.
type Rendered = (String, Result<flotilla_render::RenderedFolder, Failed>);

/// A folder that failed to render.
struct Failed {
    /// fleet.yaml's `name`, when it could be read.
    declared_name: Option<String>,
    error: String,
}

/// Records a failed fetch on the status (persisted, so it survives a restart and is visible).
async fn record_failure(state: &SharedState, name: &str, snap: &Snapshot, error: String) {
    tracing::warn!(repo = %name, %error, "git source failed");
    update_status(state, name, snap, |status| {
        status.error = Some(error);
        status.failures += 1;
    })
    .await;
}

/// Clears a fetch failure from the status once the repository answers again.
async fn clear_failure(state: &SharedState, name: &str, snap: &Snapshot) {
    update_status(state, name, snap, |status| {
        status.error = None;
        status.failures = 0;
    })
    .await;
}

/// Changes a repo's status durably, unless its spec moved (or it was deleted and created again)
/// since the run's snapshot: the next run then reports on the current spec.
async fn update_status(
    state: &SharedState,
    name: &str,
    snap: &Snapshot,
    edit: impl FnOnce(&mut GitRepoStatus),
) {
    let written = writes::sources::write_gitrepo_status(state, name, |repo| {
        if repo.spec != snap.spec {
            return None;
        }
        let mut status = repo.status.clone();
        edit(&mut status);
        Some(status)
    })
    .await;
    if let Err(error) = written {
        tracing::warn!(repo = %name, %error, "writing the git repo's status failed");
    }
}

/// Turns the rendered folders into bundle writes and deletes and publishes them with the new
/// status in one commit. Returns whether every folder rendered.
async fn publish(
    state: &SharedState,
    name: &str,
    snap: &Snapshot,
    commit: String,
    rendered: Vec<Rendered>,
) -> anyhow::Result<bool> {
    let started = Instant::now();
    let published = writes::sources::publish_render(state, name, |fleet| {
        plan_render(state, fleet, name, snap, &commit, rendered)
    })
    .await?;
    let Some(Planned {
        written,
        removed,
        failed,
    }) = published
    else {
        return Ok(true);
    };
    tracing::info!(
        repo = %name,
        commit = %commit,
        written,
        removed,
        failed,
        publish_ms = started.elapsed().as_millis() as u64,
        "git source rendered"
    );
    Ok(failed == 0)
}

/// What a published render did, for the log.
struct Planned {
    written: usize,
    removed: usize,
    failed: usize,
}

/// Plans one render against the fleet as it is: a bundle per folder that rendered (prepared by
/// the write service), the bundles no folder produces any more, and the repository's status.
/// None when the repository changed or went away while this run fetched.
fn plan_render(
    state: &SharedState,
    fleet: &Fleet,
    name: &str,
    snap: &Snapshot,
    commit: &str,
    rendered: Vec<Rendered>,
) -> Option<(Render, Planned)> {
    let mut prepared: Vec<PreparedBundle> = Vec::new();
    let mut entries: Vec<GitRepoBundle> = Vec::new();
    let mut produced: BTreeSet<String> = BTreeSet::new();
    let mut failed = 0usize;
    let repo = fleet.gitrepos().get(name)?;
    if repo.spec != snap.spec || repo.metadata.generation != snap.generation {
        // The spec changed (or the repo was deleted and created again) while this run
        // fetched; the next run (due now) renders the current one.
        state.gitops.fetch_now(name);
        return None;
    }
    let previous: BTreeMap<&str, &GitRepoBundle> = repo
        .status
        .bundles
        .iter()
        .map(|b| (b.path.as_str(), b))
        .collect();
    for (folder, result) in rendered {
        let mut declared_name = None;
        let result = result.map_err(|failed| {
            declared_name = failed.declared_name;
            failed.error
        });
        let outcome = result.and_then(|rendered| {
            let bundle_name =
                flotilla_render::bundle_name(name, &folder, rendered.name.as_deref());
            if produced.contains(&bundle_name) {
                return Err(format!(
                    "bundle name {bundle_name:?} is already used by another folder of this repository; set a distinct fleet.yaml name"
                ));
            }
            let spec = flotilla_render::bundle_spec(
                &rendered,
                &snap.spec.targets,
                snap.spec.keep_resources,
            )?;
            let mut labels = rendered.labels.clone();
            labels.insert(REPO_LABEL.into(), name.into());
            let mut annotations = BTreeMap::new();
            annotations.insert(PATH_ANNOTATION.to_string(), folder.clone());
            let resource_version = fleet
                .bundle_by_name(&bundle_name)
                .and_then(|(_, b)| b.metadata.resource_version.clone());
            let bundle = Bundle {
                api_version: flotilla_api::API_VERSION.into(),
                kind: Kind::Bundle.as_str().into(),
                metadata: ObjectMeta {
                    name: bundle_name.clone(),
                    labels,
                    annotations,
                    resource_version,
                    ..ObjectMeta::default()
                },
                spec,
                status: None,
            };
            let bundle_write = writes::bundles::prepare(fleet, bundle, Mode::Upsert, Some(name))
                .map_err(|error| error.to_string())?;
            Ok((bundle_name, bundle_write))
        });
        match outcome {
            Ok((bundle_name, bundle_write)) => {
                let digest = bundle_write.spec_digest().to_string();
                produced.insert(bundle_name.clone());
                entries.push(GitRepoBundle {
                    name: bundle_name,
                    path: folder,
                    digest,
                    error: None,
                });
                if bundle_write.changed {
                    prepared.push(bundle_write);
                }
            }
            Err(error) => {
                failed += 1;
                // The folder's previous bundle (if any) keeps serving. A folder that never
                // rendered still shows the bundle it would make (no digest: no content yet).
                let old = previous
                    .get(folder.as_str())
                    .filter(|old| !old.name.is_empty() && !old.digest.is_empty());
                if let Some(old) = old {
                    produced.insert(old.name.clone());
                }
                let name = match old {
                    Some(old) => old.name.clone(),
                    None => flotilla_render::bundle_name(name, &folder, declared_name.as_deref()),
                };
                entries.push(GitRepoBundle {
                    name,
                    path: folder,
                    digest: old.map(|o| o.digest.clone()).unwrap_or_default(),
                    error: Some(error),
                });
            }
        }
    }
    // Folders of one render can close a dependsOn cycle among themselves that no single
    // bundle's check sees (each was checked against the others' old versions): the bundles
    // on it fail like any folder that fails, and their last good versions keep serving.
    loop {
        let candidates: Vec<_> = prepared
            .iter()
            .map(PreparedBundle::dependency_candidate)
            .collect();
        let Some(cycle) = fleet.dependency_cycle(&candidates) else {
            break;
        };
        drop(candidates);
        let on_cycle: HashSet<&str> = cycle.iter().map(String::as_str).collect();
        prepared.retain(|write| !on_cycle.contains(write.name.as_str()));
        for entry in entries
            .iter_mut()
            .filter(|entry| entry.error.is_none() && on_cycle.contains(entry.name.as_str()))
        {
            failed += 1;
            entry.error = Some(writes::bundles::dependency_cycle_error(&cycle).message);
            // The digest shown is the one still serving, if any.
            entry.digest = fleet
                .bundle_by_name(&entry.name)
                .and_then(|(_, bundle)| bundle.live.as_ref())
                .map(|live| live.digest.clone())
                .unwrap_or_default();
        }
    }
    let removed: Vec<String> = fleet
        .bundles_owned_by(name)
        .into_iter()
        .filter(|bundle| !produced.contains(bundle))
        .collect();
    let status = GitRepoStatus {
        observed_generation: snap.generation,
        commit: Some(commit.to_string()),
        last_fetched: Some(rfc3339(now_seconds())),
        error: (failed > 0).then(|| {
            let total = entries.len();
            format!(
                "{failed} of {total} folders failed to render at {}; their last good bundles keep serving (see bundles[].error)",
                &commit[..commit.len().min(12)]
            )
        }),
        // Counts failed fetches; this one succeeded (folder errors are listed per folder).
        failures: 0,
        next_fetch: repo.status.next_fetch.clone(),
        bundles: entries,
    };
    let planned = Planned {
        written: prepared.len(),
        removed: removed.len(),
        failed,
    };
    Some((
        Render {
            writes: prepared,
            removed,
            status,
        },
        planned,
    ))
}
