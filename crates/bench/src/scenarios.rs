//! The scenarios: register, converge (always, before the steady-state ones), steady, rollout,
//! api, restart and rollout-waves (in `waves`), and the verdicts against the one-million-cluster
//! targets.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use flotilla_api::{
    Bundle, BundleSpec, BundleTarget, Cluster, ClusterGroup, ClusterGroupSpec, Customization,
    LabelSelector,
};
use flotilla_client::{AdminClient, ListParams, Resource};
use flotilla_sim::{SimConfig, Simulator};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use rand::RngExt;
use serde_json::json;

use crate::{
    BenchConfig, Run, Scenario,
    result::{
        ApiOperation, ApiResult, ConvergeResult, RegisterResult, RestartResult, RolloutResult,
        RolloutWavesResult, SteadyResult, Verdict,
    },
    target::Target,
    wait::wait_until,
};

/// The figures of the phases that ran.
#[derive(Debug, Default)]
pub struct Figures {
    pub register: Option<RegisterResult>,
    pub converge: Option<ConvergeResult>,
    pub steady: Option<SteadyResult>,
    pub rollout: Option<RolloutResult>,
    pub api: Option<ApiResult>,
    pub restart: Option<RestartResult>,
    pub rollout_waves: Option<RolloutWavesResult>,
}

const POLL: Duration = Duration::from_millis(250);

pub async fn drive(run: &mut Run, sim_config: SimConfig) -> anyhow::Result<Figures> {
    let mut figures = Figures::default();
    let scenario = run.config.scenario;
    figures.register = Some(register(run, sim_config).await?);
    if scenario == Scenario::Register {
        return Ok(figures);
    }
    figures.converge = Some(converge(run).await?);
    if scenario.runs(Scenario::Steady) {
        figures.steady = Some(steady(run).await?);
    }
    if scenario.runs(Scenario::Rollout) {
        figures.rollout = Some(rollout(run).await?);
    }
    if scenario.runs(Scenario::Api) {
        figures.api = Some(api(run).await?);
    }
    if scenario.runs(Scenario::Restart) {
        if matches!(run.target, Target::Child(_)) {
            figures.restart = Some(restart(run).await?);
        } else {
            run.say("bench: restart skipped: the server is not ours to kill (--server)");
        }
    }
    if scenario.runs(Scenario::RolloutWaves) {
        figures.rollout_waves = Some(crate::waves::rollout_waves(run).await?);
    }
    Ok(figures)
}

/// Clusters register from zero as fast as the server accepts them.
async fn register(run: &mut Run, sim_config: SimConfig) -> anyhow::Result<RegisterResult> {
    let start = run.begin("register");
    let clusters = u64::from(run.config.clusters);
    let began = Instant::now();
    run.simulator = Some(Simulator::start_with_stats(sim_config, run.stats.clone())?);
    let stats = run.stats.clone();
    let deadline = Duration::from_secs(120 + clusters / 200);
    wait_until("every simulated cluster to register", deadline, || {
        let stats = stats.clone();
        async move { (stats.snapshot(false).registered >= clusters).then_some(()) }
    })
    .await?;
    let seconds = began.elapsed().as_secs_f64();
    run.end("register", start);
    let stats = run.stats.snapshot(false);
    Ok(RegisterResult {
        clusters,
        seconds,
        clusters_per_second: clusters as f64 / seconds.max(1e-6),
        errors: stats.registration_errors,
        shed: stats.registrations_shed,
    })
}

/// The bench's bundle `bench-INDEX` at `revision`: a ConfigMap with a per-cluster placeholder and
/// a Deployment, for every cluster.
fn bundle(index: u32, revision: u32) -> Bundle {
    let name = format!("bench-{index}");
    let resources = vec![
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name},
            "data": {
                "region": "${cluster.labels.region}",
                "revision": revision.to_string(),
            },
        }),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{
                        "name": "app",
                        "image": format!("registry.example/{name}:{revision}"),
                    }]},
                },
            },
        }),
    ];
    let mut bundle = Bundle::new(
        &name,
        BundleSpec {
            resources,
            targets: vec![BundleTarget {
                cluster_selector: Some(LabelSelector::default()),
                customization: Customization {
                    namespace: Some("bench".into()),
                    ..Customization::default()
                },
                ..BundleTarget::default()
            }],
            ..BundleSpec::default()
        },
    );
    bundle.metadata.labels.insert("bench".into(), "true".into());
    bundle
}

/// The revision the bench last wrote into a bundle's ConfigMap (a Kubernetes manifest, so
/// untyped).
fn bundle_revision(bundle: &Bundle) -> Option<u32> {
    bundle
        .spec
        .resources
        .first()?
        .get("data")?
        .get("revision")?
        .as_str()?
        .parse()
        .ok()
}

/// Bundles are created and every cluster applies them.
async fn converge(run: &mut Run) -> anyhow::Result<ConvergeResult> {
    let start = run.begin("converge");
    let began = Instant::now();
    let bundles = run.admin.api::<Bundle>();
    for index in 0..run.config.bundles {
        bundles
            .apply(&bundle(index, 1))
            .await
            .with_context(|| format!("apply bundle bench-{index}"))?;
    }
    let deployments = u64::from(run.config.clusters) * u64::from(run.config.bundles);
    let deadline = run.config.interval * 3 + Duration::from_secs(120 + deployments / 2_000);
    let run_ref = &*run;
    wait_until(
        "every bundle Ready on every cluster",
        deadline,
        || async move {
            let ready = run_ref
                .server_metric("flotilla_bundle_deployments{state=\"ready\"}")
                .await?;
            (ready as u64 >= deployments).then_some(())
        },
    )
    .await?;
    let seconds = began.elapsed().as_secs_f64();
    run.end("converge", start);
    Ok(ConvergeResult {
        deployments,
        seconds,
    })
}

/// The fleet holds still for `--duration`: server CPU per sync, memory, sync latency, errors.
async fn steady(run: &mut Run) -> anyhow::Result<SteadyResult> {
    let start = run.begin("steady");
    let before = run.stats.snapshot(false);
    run.stats.reset_phase();
    let cpu_before = run.pid_cpu();
    let sim_cpu_before = crate::sampler::own_cpu();
    let began = Instant::now();
    tokio::time::sleep(run.config.duration).await;
    let seconds = began.elapsed().as_secs_f64();
    let after = run.stats.snapshot(false);
    let cpu_after = run.pid_cpu();
    let sim_cpu_after = crate::sampler::own_cpu();
    let latency = run.stats.phase_latency();
    let offline_at_end = run
        .server_metric("flotilla_clusters{state=\"Offline\"}")
        .await
        .map(|value| value as u64);
    let end = run.now();
    run.end("steady", start);
    let syncs = after.syncs - before.syncs;
    let server_cpu = match (cpu_before, cpu_after) {
        (Some((pid_a, a)), Some((pid_b, b))) if pid_a == pid_b => Some(b - a),
        _ => None,
    };
    let samples = run.samples_between(start, end);
    Ok(SteadyResult {
        seconds,
        syncs,
        syncs_per_second: syncs as f64 / seconds.max(1e-6),
        syncs_per_second_asked: f64::from(run.config.clusters)
            / run.config.interval.as_secs_f64().max(1e-6),
        offline_at_end,
        errors: (after.sync_errors + after.registration_errors)
            - (before.sync_errors + before.registration_errors),
        server_cpu_micros_per_sync: server_cpu
            .filter(|_| syncs > 0)
            .map(|cpu| cpu * 1e6 / syncs as f64),
        server_cpu_cores: server_cpu.map(|cpu| cpu / seconds.max(1e-6)),
        server_rss_mib_max: samples
            .iter()
            .filter_map(|sample| sample.server_rss_mib)
            .reduce(f64::max),
        sim_cpu_cores: match (sim_cpu_before, sim_cpu_after) {
            (Some(a), Some(b)) => Some((b - a) / seconds.max(1e-6)),
            _ => None,
        },
        sync_p50_ms: latency.p50_micros as f64 / 1e3,
        sync_p99_ms: latency.p99_micros as f64 / 1e3,
        sync_max_ms: latency.max_micros as f64 / 1e3,
    })
}

/// One bundle targeted at every cluster changes; how long until its new revision is Ready.
async fn rollout(run: &mut Run) -> anyhow::Result<RolloutResult> {
    let start = run.begin("rollout");
    let name = "bench-0";
    let bundles = run.admin.api::<Bundle>();
    let revision = bundle_revision(&bundles.get(name).await?).unwrap_or(1);
    // The clock starts before the change is sent: the admin call is part of the rollout.
    let began = Instant::now();
    let changed = bundles.apply(&bundle(0, revision + 1)).await?;
    let generation = Some(changed.object.metadata.generation)
        .filter(|generation| *generation > 0)
        .context("the server returned no generation for the changed bundle")?;
    let mut reached: [Option<f64>; 4] = [None; 4];
    let shares = [0.5, 0.9, 0.99, 1.0];
    let deadline = began + run.config.interval * 3 + Duration::from_secs(120);
    let mut desired = 0;
    while reached[3].is_none() && Instant::now() < deadline {
        let status = bundles.get(name).await?.status.unwrap_or_default();
        if status.observed_generation >= generation {
            desired = status.summary.desired;
            let ready = status.summary.ready;
            let elapsed = began.elapsed().as_secs_f64();
            for (slot, share) in reached.iter_mut().zip(shares) {
                if slot.is_none() && desired > 0 && ready as f64 >= share * desired as f64 {
                    *slot = Some(elapsed);
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
    run.end("rollout", start);
    Ok(RolloutResult {
        bundle: name.to_string(),
        desired,
        seconds_to_50: reached[0],
        seconds_to_90: reached[1],
        seconds_to_99: reached[2],
        seconds_to_100: reached[3],
    })
}

const API_OPERATIONS: [&str; 7] = [
    "list clusters",
    "filter clusters by selector",
    "filter clusters by state",
    "page clusters",
    "get cluster",
    "list bundles",
    "get bundle",
];

/// Latency and error count of one admin operation.
type OperationStats = (Histogram<u64>, u64);

/// Concurrent admin users list, filter, page and describe while the fleet syncs.
async fn api(run: &mut Run) -> anyhow::Result<ApiResult> {
    let start = run.begin("api");
    run.stats.reset_phase();
    let began = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let histograms: Arc<Mutex<Vec<OperationStats>>> = Arc::new(Mutex::new(
        API_OPERATIONS
            .iter()
            .map(|_| {
                (
                    Histogram::new_with_bounds(1, 600_000_000, 2).expect("valid bounds"),
                    0,
                )
            })
            .collect(),
    ));
    let mut users = Vec::new();
    for user in 0..run.config.api_users.max(1) {
        let admin = AdminClient::new(&run.target.base(), run.target.admin_token())?;
        let stop = stop.clone();
        let histograms = histograms.clone();
        let clusters = run.config.clusters;
        let bundles = run.config.bundles.max(1);
        users.push(tokio::spawn(async move {
            let mut cursor: Option<String> = None;
            let mut turn = user;
            while !stop.load(Ordering::Relaxed) {
                let operation = turn % API_OPERATIONS.len();
                turn += 1;
                let started = Instant::now();
                let ok = api_call(&admin, operation, clusters, bundles, &mut cursor).await;
                let micros = started.elapsed().as_micros() as u64;
                let mut histograms = histograms.lock();
                let _ = histograms[operation].0.record(micros.clamp(1, 600_000_000));
                if !ok {
                    histograms[operation].1 += 1;
                }
            }
        }));
    }
    tokio::time::sleep(run.config.api_duration).await;
    stop.store(true, Ordering::Relaxed);
    for user in users {
        let _ = user.await;
    }
    let seconds = began.elapsed().as_secs_f64();
    let latency = run.stats.phase_latency();
    run.end("api", start);
    let histograms = histograms.lock();
    let operations = API_OPERATIONS
        .iter()
        .zip(histograms.iter())
        .map(|(name, (histogram, errors))| ApiOperation {
            name: name.to_string(),
            count: histogram.len(),
            errors: *errors,
            p50_ms: histogram.value_at_quantile(0.5) as f64 / 1e3,
            p99_ms: histogram.value_at_quantile(0.99) as f64 / 1e3,
            max_ms: histogram.max() as f64 / 1e3,
        })
        .collect();
    Ok(ApiResult {
        users: run.config.api_users.max(1),
        seconds,
        operations,
        sync_p99_ms: latency.p99_micros as f64 / 1e3,
    })
}

async fn api_call(
    admin: &AdminClient,
    operation: usize,
    clusters: u32,
    bundles: u32,
    cursor: &mut Option<String>,
) -> bool {
    let cluster_name = || format!("bench-{:07}", rand::rng().random_range(0..clusters.max(1)));
    let clusters_api = admin.api::<Cluster>();
    let bundles_api = admin.api::<Bundle>();
    let page = |params: ListParams| {
        let clusters_api = &clusters_api;
        async move {
            clusters_api
                .list(&ListParams {
                    limit: Some(100),
                    ..params
                })
                .await
                .is_ok()
        }
    };
    match operation {
        0 => page(ListParams::default()).await,
        1 => {
            page(ListParams {
                label_selector: Some("region=eu-west,env in (prod,staging)".into()),
                ..ListParams::default()
            })
            .await
        }
        2 => {
            page(ListParams {
                state: Some("Online".into()),
                ..ListParams::default()
            })
            .await
        }
        3 => match clusters_api
            .list(&ListParams {
                limit: Some(100),
                continue_: cursor.clone(),
                ..ListParams::default()
            })
            .await
        {
            Ok(list) => {
                *cursor = list.continue_token;
                true
            }
            Err(_) => false,
        },
        4 => clusters_api.get(&cluster_name()).await.is_ok(),
        5 => bundles_api
            .list(&ListParams {
                limit: Some(100),
                ..ListParams::default()
            })
            .await
            .is_ok(),
        _ => {
            let name = format!("bench-{}", rand::rng().random_range(0..bundles));
            bundles_api.get(&name).await.is_ok()
        }
    }
}

/// `kill -9` while admin writes are in flight, start again: time to serve, time until every
/// cluster is Online, and every acknowledged write still there.
async fn restart(run: &mut Run) -> anyhow::Result<RestartResult> {
    let start = run.begin("restart");
    let clusters_before = run
        .admin
        .api::<Cluster>()
        .count(&ListParams::default())
        .await?;
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..4 {
        let groups =
            AdminClient::new(&run.target.base(), run.target.admin_token())?.api::<ClusterGroup>();
        let acknowledged = acknowledged.clone();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut index = 0;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("bench-ack-{writer}-{index}");
                index += 1;
                let group = ClusterGroup::new(
                    &name,
                    ClusterGroupSpec {
                        selector: LabelSelector {
                            match_labels: BTreeMap::from([(
                                "region".to_string(),
                                "eu-west".to_string(),
                            )]),
                            ..LabelSelector::default()
                        },
                    },
                );
                match groups.create(&group).await {
                    Ok(_) => acknowledged.lock().push(name),
                    Err(_) => break,
                }
            }
        }));
    }
    // Kill once writes are flowing, so some are acknowledged and some in flight.
    let flowing = acknowledged.clone();
    wait_until("admin writes to flow", Duration::from_secs(30), || {
        let flowing = flowing.clone();
        async move { (flowing.lock().len() >= 50).then_some(()) }
    })
    .await?;
    let Target::Child(child) = &mut run.target else {
        bail!("restart needs a server the bench started");
    };
    child.kill().await?;
    let killed = Instant::now();
    run.pid.set(None);
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        let _ = writer.await;
    }
    let acknowledged = std::mem::take(&mut *acknowledged.lock());
    let healthy = child.restart(Duration::from_secs(600)).await?;
    let seconds_to_healthy = killed.elapsed().as_secs_f64();
    let _ = healthy;
    run.pid.set(run.target.pid());
    let clusters = &run.admin.api::<Cluster>();
    let clusters_after = wait_until(
        "the restarted server to list the whole fleet",
        Duration::from_secs(600),
        || async move {
            let count = clusters.count(&ListParams::default()).await.ok()?;
            (count >= clusters_before).then_some(count)
        },
    )
    .await
    .unwrap_or(0);
    let seconds_to_serve_fleet = killed.elapsed().as_secs_f64();
    let mut lost_writes = Vec::new();
    let groups: BTreeSet<String> = run
        .admin
        .api::<ClusterGroup>()
        .list_all(&ListParams::default())
        .await?
        .into_iter()
        .map(|group| group.metadata.name)
        .collect();
    for name in &acknowledged {
        if !groups.contains(name) {
            lost_writes.push(name.clone());
        }
    }
    let run_ref = &*run;
    let expected_online = u64::from(run.config.clusters);
    let deadline = run.config.interval * 3 + Duration::from_secs(120);
    let seconds_to_all_online = wait_until("every cluster Online again", deadline, || async move {
        let online = run_ref
            .server_metric("flotilla_clusters{state=\"Online\"}")
            .await?;
        (online as u64 >= expected_online).then_some(())
    })
    .await
    .ok()
    .map(|()| killed.elapsed().as_secs_f64());
    run.end("restart", start);
    Ok(RestartResult {
        seconds_to_healthy,
        seconds_to_serve_fleet,
        seconds_to_all_online,
        acknowledged_writes: acknowledged.len() as u64,
        lost_writes,
        clusters_before,
        clusters_after,
    })
}

const MILLION: u32 = 1_000_000;

/// Share of the asked sync rate the server must answer for the fleet to count as held; the
/// simulator's jitter and the phase edges make the measured rate wobble by a few percent.
const HELD_SHARE: f64 = 0.95;

/// Whether a steady phase held the fleet: no errors, (nearly) every asked sync answered, and no
/// cluster Offline at the end. `Err` says which condition failed.
fn steady_held(steady: &SteadyResult) -> Result<(), String> {
    let mut failed = Vec::new();
    if steady.errors > 0 {
        failed.push(format!("{} errors", steady.errors));
    }
    if steady.syncs_per_second < steady.syncs_per_second_asked * HELD_SHARE {
        failed.push(format!(
            "answered {:.0}% of the asked sync rate (needs {:.0}%)",
            100.0 * steady.syncs_per_second / steady.syncs_per_second_asked.max(1e-9),
            100.0 * HELD_SHARE
        ));
    }
    match steady.offline_at_end {
        Some(0) => {}
        Some(offline) => failed.push(format!("{offline} clusters Offline at the end")),
        None => failed.push("Offline count unreadable at the end".into()),
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

/// A verdict per target of the one-million-cluster issue. The P targets are stated for
/// 1,000,000 clusters: below that they are not judged (`met` absent, the note says why), since
/// a pass at 10,000 says nothing about a million and a miss is for the measured value to show.
pub fn verdicts(config: &BenchConfig, figures: &Figures) -> Vec<Verdict> {
    let at_scale = config.clusters >= MILLION;
    let scale_note = if at_scale {
        String::new()
    } else {
        format!(
            "the target is stated at 1,000,000 clusters; this run had {}",
            config.clusters
        )
    };
    let mut verdicts = Vec::new();
    if let Some(steady) = &figures.steady {
        let held_minutes = steady.seconds / 60.0;
        let interval = config.interval.as_secs_f64();
        let judged = at_scale && held_minutes >= 10.0;
        let (id, measure) = if at_scale && interval <= 30.0 {
            ("P8", "1M clusters at a 30-second sync interval")
        } else {
            (
                "P1",
                "steady state: 1M clusters, 3 nodes and 4 bundles each",
            )
        };
        let held = steady_held(steady);
        verdicts.push(Verdict {
            id: id.into(),
            measure: measure.into(),
            target: "held 10 minutes, 0 errors".into(),
            measured: format!(
                "{} clusters for {held_minutes:.1} min at a {interval:.0} s interval: {:.0} of {:.0} syncs/s asked answered, {} errors, {} Offline at the end",
                config.clusters,
                steady.syncs_per_second,
                steady.syncs_per_second_asked,
                steady.errors,
                steady
                    .offline_at_end
                    .map_or_else(|| "unknown".to_string(), |n| n.to_string()),
            ),
            met: judged.then_some(held.is_ok()),
            note: if !judged && at_scale {
                "held less than 10 minutes".into()
            } else if !judged {
                scale_note.clone()
            } else {
                held.err().unwrap_or_default()
            },
        });
        if let Some(micros) = steady.server_cpu_micros_per_sync {
            verdicts.push(Verdict {
                id: "P2".into(),
                measure: "server CPU per agent sync".into(),
                target: "≤ 60 µs".into(),
                measured: format!("{micros:.1} µs"),
                met: at_scale.then_some(micros <= 60.0),
                note: scale_note.clone(),
            });
        }
        if let Some(rss) = steady.server_rss_mib_max {
            verdicts.push(Verdict {
                id: "P6".into(),
                measure: "server resident memory at steady state".into(),
                target: "≤ 3 GiB at 1M clusters".into(),
                measured: format!("{rss:.0} MiB"),
                met: at_scale.then_some(rss <= 3072.0),
                note: scale_note.clone(),
            });
        }
    }
    if let Some(register) = &figures.register {
        verdicts.push(Verdict {
            id: "P3".into(),
            measure: "registration rate, each registration durable".into(),
            target: "≥ 5,000 clusters/s".into(),
            measured: format!(
                "{:.0} clusters/s ({} in {:.1} s; {} shed with 429 and retried, {} other errors)",
                register.clusters_per_second,
                register.clusters,
                register.seconds,
                register.shed,
                register.errors.saturating_sub(register.shed)
            ),
            met: at_scale.then_some(register.clusters_per_second >= 5_000.0),
            note: scale_note.clone(),
        });
    }
    if let Some(rollout) = &figures.rollout {
        let limit = config.interval.as_secs_f64() + 10.0;
        verdicts.push(Verdict {
            id: "P4".into(),
            measure: "bundle change until 99% of clusters report it Ready".into(),
            target: format!("≤ one sync interval + 10 s ({limit:.0} s)"),
            measured: match rollout.seconds_to_99 {
                Some(seconds) => format!("{seconds:.1} s"),
                None => "not reached".into(),
            },
            met: at_scale.then(|| {
                rollout
                    .seconds_to_99
                    .is_some_and(|seconds| seconds <= limit)
            }),
            note: scale_note.clone(),
        });
    }
    if let Some(restart) = &figures.restart {
        verdicts.push(Verdict {
            id: "P5".into(),
            measure: "kill -9 until the server serves the full fleet again".into(),
            target: "≤ 30 s, nothing acknowledged lost".into(),
            measured: format!(
                "{:.1} s, {} of {} acknowledged writes lost",
                restart.seconds_to_serve_fleet,
                restart.lost_writes.len(),
                restart.acknowledged_writes
            ),
            met: at_scale.then_some(
                restart.seconds_to_serve_fleet <= 30.0
                    && restart.lost_writes.is_empty()
                    && restart.clusters_after >= restart.clusters_before,
            ),
            note: scale_note.clone(),
        });
    }
    if let Some(api) = &figures.api {
        let worst = api
            .operations
            .iter()
            .map(|operation| operation.p99_ms)
            .fold(0.0, f64::max);
        let errors: u64 = api
            .operations
            .iter()
            .map(|operation| operation.errors)
            .sum();
        verdicts.push(Verdict {
            id: "P7".into(),
            measure: "admin list / filter / page / describe p99 under load".into(),
            target: "≤ 100 ms".into(),
            measured: format!("worst p99 {worst:.1} ms, {errors} errors"),
            met: at_scale.then_some(worst <= 100.0 && errors == 0),
            note: scale_note,
        });
    }
    if let Some(waves) = &figures.rollout_waves {
        verdicts.extend(crate::waves::verdicts(config, waves));
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steady(answered: f64, errors: u64, offline: Option<u64>) -> SteadyResult {
        SteadyResult {
            seconds: 600.0,
            syncs: (answered * 600.0) as u64,
            syncs_per_second: answered,
            syncs_per_second_asked: 33_333.0,
            offline_at_end: offline,
            errors,
            server_cpu_micros_per_sync: None,
            server_cpu_cores: None,
            server_rss_mib_max: None,
            sim_cpu_cores: None,
            sync_p50_ms: 1.0,
            sync_p99_ms: 10.0,
            sync_max_ms: 20.0,
        }
    }

    #[test]
    fn a_fleet_counts_as_held_only_when_the_asked_rate_was_answered() {
        assert!(steady_held(&steady(33_000.0, 0, Some(0))).is_ok());
        let slow = steady_held(&steady(9_200.0, 0, Some(0))).unwrap_err();
        assert!(slow.contains("asked sync rate"), "{slow}");
    }

    #[test]
    fn a_fleet_with_errors_or_offline_clusters_is_not_held() {
        let errors = steady_held(&steady(33_000.0, 3, Some(0))).unwrap_err();
        assert!(errors.contains("3 errors"), "{errors}");
        let offline = steady_held(&steady(33_000.0, 0, Some(12))).unwrap_err();
        assert!(offline.contains("12 clusters Offline"), "{offline}");
        assert!(steady_held(&steady(33_000.0, 0, None)).is_err());
    }

    #[test]
    fn below_a_million_clusters_no_p_target_is_judged() {
        let figures = Figures {
            steady: Some(SteadyResult {
                server_cpu_micros_per_sync: Some(10.0),
                server_rss_mib_max: Some(100.0),
                ..steady(33_000.0, 0, Some(0))
            }),
            register: Some(RegisterResult {
                clusters: 10_000,
                seconds: 1.0,
                clusters_per_second: 10_000.0,
                errors: 0,
                shed: 0,
            }),
            ..Figures::default()
        };
        let small = BenchConfig {
            clusters: 10_000,
            ..BenchConfig::default()
        };
        let below = verdicts(&small, &figures);
        assert_eq!(below.len(), 4);
        for verdict in &below {
            assert_eq!(verdict.met, None, "{verdict:?}");
            assert!(verdict.note.contains("1,000,000"), "{verdict:?}");
        }
        let at_scale = BenchConfig {
            clusters: MILLION,
            ..BenchConfig::default()
        };
        let judged = verdicts(&at_scale, &figures);
        assert!(
            judged.iter().all(|verdict| verdict.met.is_some()),
            "{judged:?}"
        );
    }
}
