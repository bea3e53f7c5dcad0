//! `report.html`: one self-contained page with the run's figures, its verdicts, and SVG plots
//! of each series over time (drawn in `chart`), phases marked.

use std::fmt::Write;

use crate::{
    chart::{Axis, BLUE_LINE, ChartSpec, GREEN_LINE, Line, ORANGE_LINE, chart},
    result::{BenchResult, RolloutWavesResult, ServerCpu},
};

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn row(html: &mut String, cells: &[String]) {
    html.push_str("<tr>");
    for cell in cells {
        let _ = write!(html, "<td>{}</td>", escape(cell));
    }
    html.push_str("</tr>\n");
}

fn table(html: &mut String, title: &str, headers: &[&str], rows: &[Vec<String>]) {
    let _ = write!(html, "<h2>{}</h2>\n<table><tr>", escape(title));
    for header in headers {
        let _ = write!(html, "<th>{}</th>", escape(header));
    }
    html.push_str("</tr>\n");
    for cells in rows {
        row(html, cells);
    }
    html.push_str("</table>\n");
}

fn seconds(value: Option<f64>) -> String {
    value.map_or_else(|| "not reached".into(), |s| format!("{s:.1} s"))
}

fn optional(value: Option<f64>, unit: &str) -> String {
    value.map_or_else(|| "not sampled".into(), |v| format!("{v:.2} {unit}"))
}

fn server_cpu(cpu: Option<&ServerCpu>) -> String {
    match cpu {
        Some(cpu) => format!(
            "server {:.1} CPU s ({:.2} cores, busiest second {})",
            cpu.seconds,
            cpu.cores,
            optional(cpu.cores_peak, "cores")
        ),
        None => "server CPU not sampled".into(),
    }
}

/// The rollout-waves rows of the figures table: the good revision's run and the rollback.
fn rollout_waves_figures(waves: &RolloutWavesResult) -> Vec<Vec<String>> {
    let advance = &waves.advance;
    let mut rows = vec![vec![
        "rollout-waves: good revision".into(),
        format!(
            "{} on {} clusters in {} waves (canary soak {:.0} s): write acknowledged in {:.2} s, Succeeded after {} (last seen {}); {}",
            waves.bundle,
            waves.clusters,
            advance.waves.len(),
            waves.canary_soak_seconds,
            advance.write_seconds,
            seconds(advance.seconds_to_succeeded),
            advance.final_phase,
            server_cpu(advance.server_cpu.as_ref()),
        ),
    ]];
    if let Some(rollback) = &waves.rollback {
        rows.push(vec![
            "rollout-waves: failing revision".into(),
            format!(
                "wave {} failed ({} of {} clusters); first failure seen {}, RollingBack {} (decision {}, at most {}), RolledBack {} (rollback {}), every cluster Ready on the stable revision {} ({} after the failure); later waves: at most {} clusters on the candidate, {} of {} never started; simulator: at most {} deployments not Ready at once; {}",
                rollback.failed_wave.as_deref().unwrap_or("none"),
                rollback.failed_wave_failed,
                rollback.failed_wave_clusters,
                seconds_2(rollback.seconds_to_first_failure),
                seconds_2(rollback.seconds_to_decision),
                seconds_2(rollback.decision_seconds),
                seconds_2(rollback.decision_seconds_bound),
                seconds(rollback.seconds_to_rolled_back),
                seconds(rollback.rollback_seconds),
                seconds(rollback.seconds_to_stable_ready),
                seconds(rollback.stable_ready_after_failure_seconds),
                rollback.later_waves_updated_max,
                rollback.later_waves_never_started,
                rollback.later_waves,
                rollback.sim_not_ready_max,
                server_cpu(rollback.server_cpu.as_ref()),
            ),
        ]);
    }
    rows
}

/// Per wave of the good revision's run.
fn rollout_waves_table(html: &mut String, waves: &RolloutWavesResult) {
    let rows: Vec<Vec<String>> = waves
        .advance
        .waves
        .iter()
        .map(|wave| {
            vec![
                wave.name.clone(),
                wave.clusters.to_string(),
                format!("{:.0} s", wave.soak_seconds),
                seconds_2(wave.seconds_to_start),
                seconds_2(wave.seconds_to_all_ready),
                seconds_2(wave.seconds_to_done),
                seconds_2(wave.decision_seconds),
                seconds_2(wave.decision_seconds_bound),
            ]
        })
        .collect();
    table(
        html,
        &format!(
            "Rollout waves: the good revision (seconds since the write; status read every {:.0} ms, longest gap {:.0} ms, {} failed reads)",
            waves.poll_ms, waves.poll_gap_max_ms, waves.read_errors
        ),
        &[
            "wave",
            "clusters",
            "soak",
            "started",
            "all Ready",
            "done",
            "decision",
            "decision at most",
        ],
        &rows,
    );
    html.push_str(
        "<p>Decision: the next wave seen started (or the run seen Succeeded, after the last wave) \
         minus the time every cluster of the wave was seen Ready plus its soak, first sighting to \
         first sighting (0 when both showed in the same read). At most: the same from the read \
         before every cluster was seen Ready (the earliest its last report can have landed).</p>\n",
    );
}

fn seconds_2(value: Option<f64>) -> String {
    value.map_or_else(|| "not seen".into(), |s| format!("{s:.2} s"))
}

pub fn render_html(result: &BenchResult) -> anyhow::Result<String> {
    let samples = &result.samples;
    let phases = &result.phases;
    let charts = [
        chart(
            &ChartSpec {
                title: "Clusters",
                unit: "clusters",
                axis: Axis::Count,
                spike_phase: None,
                lines: &[
                    Line {
                        label: "registered",
                        color: BLUE_LINE,
                        value: |s| Some(s.registered as f64),
                    },
                    Line {
                        label: "online (simulator)",
                        color: ORANGE_LINE,
                        value: |s| Some(s.online.max(0) as f64),
                    },
                    Line {
                        label: "online (server)",
                        color: GREEN_LINE,
                        value: |s| s.server_online.map(|v| v as f64),
                    },
                ],
            },
            samples,
            phases,
        )?,
        chart(
            &ChartSpec {
                title: "Requests per second",
                unit: "per second",
                axis: Axis::Measure,
                spike_phase: Some("register"),
                lines: &[
                    Line {
                        label: "syncs/s",
                        color: BLUE_LINE,
                        value: |s| Some(s.syncs_per_second),
                    },
                    Line {
                        label: "registrations/s",
                        color: ORANGE_LINE,
                        value: |s| Some(s.registrations_per_second),
                    },
                ],
            },
            samples,
            phases,
        )?,
        chart(
            &ChartSpec {
                title: "Sync latency seen by agents",
                unit: "milliseconds",
                axis: Axis::Measure,
                spike_phase: None,
                lines: &[
                    Line {
                        label: "p50",
                        color: BLUE_LINE,
                        value: |s| Some(s.sync_p50_ms),
                    },
                    Line {
                        label: "p99",
                        color: ORANGE_LINE,
                        value: |s| Some(s.sync_p99_ms),
                    },
                ],
            },
            samples,
            phases,
        )?,
        chart(
            &ChartSpec {
                title: "CPU",
                unit: "cores",
                axis: Axis::Measure,
                spike_phase: None,
                lines: &[
                    Line {
                        label: "server",
                        color: BLUE_LINE,
                        value: |s| s.server_cpu_cores,
                    },
                    Line {
                        label: "simulator",
                        color: ORANGE_LINE,
                        value: |s| s.sim_cpu_cores,
                    },
                ],
            },
            samples,
            phases,
        )?,
        chart(
            &ChartSpec {
                title: "Resident memory",
                unit: "MiB",
                axis: Axis::Measure,
                spike_phase: None,
                lines: &[
                    Line {
                        label: "server",
                        color: BLUE_LINE,
                        value: |s| s.server_rss_mib,
                    },
                    Line {
                        label: "simulator",
                        color: ORANGE_LINE,
                        value: |s| s.sim_rss_mib,
                    },
                ],
            },
            samples,
            phases,
        )?,
        chart(
            &ChartSpec {
                title: "Bundle deployments",
                unit: "deployments",
                axis: Axis::Count,
                spike_phase: None,
                lines: &[
                    Line {
                        label: "desired",
                        color: BLUE_LINE,
                        value: |s| s.bundles_desired.map(|v| v as f64),
                    },
                    Line {
                        label: "ready",
                        color: GREEN_LINE,
                        value: |s| s.bundles_ready.map(|v| v as f64),
                    },
                ],
            },
            samples,
            phases,
        )?,
    ];
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>flotilla bench: {scenario}, {clusters} clusters</title>\n<style>\
         body{{font-family:system-ui,sans-serif;margin:2em;max-width:1600px;color:#222}}\
         table{{border-collapse:collapse;margin-bottom:1em}}\
         td,th{{border:1px solid #ccc;padding:4px 10px;text-align:left}}\
         th{{background:#f3f3f3}}\
         .charts>div{{width:100%;margin-bottom:16px}}\
         .met{{color:#1a7f37;font-weight:bold}}.missed{{color:#cf222e;font-weight:bold}}\
         code{{background:#f3f3f3;padding:2px 4px}}\
         </style></head><body>\n<h1>flotilla bench: {scenario}, {clusters} clusters</h1>\n\
         <p>Command: <code>{command}</code><br>Commit {commit}, started {started}<br>\
         Machine: {cores} cores, {memory:.1} GiB, {cpu}, Linux {kernel}{cpus}<br>\
         {bundles} bundles and {nodes} nodes per cluster, sync interval {interval:.0} s{sampled}</p>\n",
        scenario = escape(&result.scenario),
        clusters = result.clusters,
        command = escape(&result.command),
        commit = escape(&result.commit),
        started = escape(&result.started_at),
        cores = result.machine.cores,
        memory = result.machine.memory_gib,
        cpu = escape(&result.machine.cpu_model),
        kernel = escape(&result.machine.kernel),
        cpus = match (&result.machine.bench_cpus, &result.machine.server_cpus) {
            (Some(bench), Some(server)) => format!(
                "; simulator on CPUs {}, server on CPUs {}",
                escape(bench),
                escape(server)
            ),
            (Some(bench), None) => format!("; simulator on CPUs {}", escape(bench)),
            _ => String::new(),
        },
        bundles = result.bundles_per_cluster,
        nodes = result.nodes_per_cluster,
        interval = result.sync_interval_seconds,
        sampled = if result.server_sampled {
            ""
        } else {
            "; the server was not started by the bench, so its CPU and memory were not sampled"
        },
    );
    if !result.verdicts.is_empty() {
        html.push_str("<h2>Targets</h2>\n<table><tr><th>id</th><th>measure</th><th>target</th><th>measured</th><th>verdict</th><th>note</th></tr>\n");
        for verdict in &result.verdicts {
            let (class, word) = match verdict.met {
                Some(true) => ("met", "pass"),
                Some(false) => ("missed", "FAIL"),
                None => ("", "not judged"),
            };
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{word}</td><td>{}</td></tr>",
                escape(&verdict.id),
                escape(&verdict.measure),
                escape(&verdict.target),
                escape(&verdict.measured),
                escape(&verdict.note),
            );
        }
        html.push_str("</table>\n");
    }
    let mut figures = Vec::new();
    if let Some(register) = &result.register {
        figures.push(vec![
            "register".into(),
            format!(
                "{} clusters in {:.1} s: {:.0} clusters/s, {} shed with 429 and retried, {} other errors",
                register.clusters,
                register.seconds,
                register.clusters_per_second,
                register.shed,
                register.errors.saturating_sub(register.shed)
            ),
        ]);
    }
    if let Some(converge) = &result.converge {
        figures.push(vec![
            "converge".into(),
            format!(
                "{} bundle deployments Ready in {:.1} s",
                converge.deployments, converge.seconds
            ),
        ]);
    }
    if let Some(steady) = &result.steady {
        figures.push(vec!["steady".into(), format!(
            "{:.0} s, {} syncs ({:.0}/s of {:.0}/s asked), {} errors, {} Offline at the end; server {} per sync, {}, RSS max {}; simulator {}; sync p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms",
            steady.seconds, steady.syncs, steady.syncs_per_second, steady.syncs_per_second_asked, steady.errors,
            steady.offline_at_end.map_or_else(|| "unknown".to_string(), |n| n.to_string()),
            optional(steady.server_cpu_micros_per_sync, "µs"),
            optional(steady.server_cpu_cores, "cores"),
            optional(steady.server_rss_mib_max, "MiB"),
            optional(steady.sim_cpu_cores, "cores"),
            steady.sync_p50_ms, steady.sync_p99_ms, steady.sync_max_ms,
        )]);
    }
    if let Some(rollout) = &result.rollout {
        figures.push(vec![
            "rollout".into(),
            format!(
                "{} on {} clusters: 50% in {}, 90% in {}, 99% in {}, 100% in {}",
                rollout.bundle,
                rollout.desired,
                seconds(rollout.seconds_to_50),
                seconds(rollout.seconds_to_90),
                seconds(rollout.seconds_to_99),
                seconds(rollout.seconds_to_100),
            ),
        ]);
    }
    if let Some(restart) = &result.restart {
        figures.push(vec!["restart".into(), format!(
            "healthy {:.1} s after kill -9, whole fleet served after {:.1} s, all Online after {}; {} of {} acknowledged writes lost; clusters {} before, {} after",
            restart.seconds_to_healthy, restart.seconds_to_serve_fleet, seconds(restart.seconds_to_all_online),
            restart.lost_writes.len(), restart.acknowledged_writes, restart.clusters_before, restart.clusters_after,
        )]);
    }
    if let Some(waves) = &result.rollout_waves {
        figures.extend(rollout_waves_figures(waves));
    }
    table(&mut html, "Figures", &["phase", "result"], &figures);
    if let Some(waves) = &result.rollout_waves {
        rollout_waves_table(&mut html, waves);
    }
    if let Some(api) = &result.api {
        let rows: Vec<Vec<String>> = api
            .operations
            .iter()
            .map(|operation| {
                vec![
                    operation.name.clone(),
                    operation.count.to_string(),
                    operation.errors.to_string(),
                    format!("{:.2}", operation.p50_ms),
                    format!("{:.2}", operation.p99_ms),
                    format!("{:.1}", operation.max_ms),
                ]
            })
            .collect();
        table(
            &mut html,
            &format!(
                "Admin API under load ({} users, {:.0} s; agents' sync p99 meanwhile {:.2} ms)",
                api.users, api.seconds, api.sync_p99_ms
            ),
            &[
                "operation",
                "requests",
                "errors",
                "p50 ms",
                "p99 ms",
                "max ms",
            ],
            &rows,
        );
    }
    html.push_str("<h2>Over time</h2>\n<div class=\"charts\">\n");
    for svg in charts {
        let _ = writeln!(html, "<div>{svg}</div>");
    }
    html.push_str("</div>\n</body></html>\n");
    Ok(html)
}
