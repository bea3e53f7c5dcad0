//! A bundle's rollout status (text, one line per change for `--watch`, or its document) and
//! its revision history.

use flotilla_api::{BundleRevision, RolloutStatus, WaveStatus};
use serde_json::json;

use super::{
    Format,
    cells::{age, one_line, seconds_text, short, text},
    serial::{out, print_json, print_yaml, to_json},
    table::aligned,
};

/// Width of the keys in the rollout status' facts (`Revisions:  `).
const ROLLOUT_KEY_WIDTH: usize = 12;

/// The wave a run is in, with its place: `canary (1/3)`.
fn current_wave(status: &RolloutStatus) -> Option<(String, &WaveStatus)> {
    let index = usize::try_from(status.current_wave?).ok()?;
    let wave = status.waves.get(index)?;
    Some((
        format!("{} ({}/{})", wave.name, index + 1, status.waves.len()),
        wave,
    ))
}

/// `stable 3, candidate 4, held 2`.
fn revisions_text(status: &RolloutStatus) -> String {
    let mut parts = vec![format!("stable {}", status.stable_revision)];
    if let Some(candidate) = status.candidate_revision {
        parts.push(format!("candidate {candidate}"));
    }
    if let Some(held) = status.held_revision {
        parts.push(format!("held {held}"));
    }
    parts.join(", ")
}

/// A time with its age: `2026-12-07T10:00:00Z (5m ago)`.
fn time_with_age(time: Option<&str>) -> String {
    match time {
        Some(time) if !age(Some(time)).is_empty() => format!("{time} ({} ago)", age(Some(time))),
        Some(time) => time.to_string(),
        None => String::new(),
    }
}

/// A `Key:  value` line of the rollout status; nothing when the value is empty.
fn rollout_fact(text: &mut String, key: &str, value: String) {
    if !value.is_empty() {
        text.push_str(&format!(
            "{:<width$}{value}\n",
            format!("{key}:"),
            width = ROLLOUT_KEY_WIDTH
        ));
    }
}

/// `rollout status` as text: the run's facts, a row per wave, then why it stopped.
pub fn rollout_status_text(bundle: &str, status: &RolloutStatus) -> anyhow::Result<String> {
    let mut text = String::new();
    rollout_fact(&mut text, "Bundle", bundle.to_string());
    let phase = if status.phase.is_empty() {
        "None (no rollout has run)".to_string()
    } else {
        status.phase.clone()
    };
    rollout_fact(&mut text, "Phase", phase);
    rollout_fact(&mut text, "Revisions", revisions_text(status));
    let wave = current_wave(status).map(|(wave, _)| wave);
    rollout_fact(&mut text, "Wave", self::text(wave));
    rollout_fact(
        &mut text,
        "Started",
        time_with_age(status.started.as_deref()),
    );
    rollout_fact(
        &mut text,
        "Updated",
        time_with_age(status.updated.as_deref()),
    );
    if !status.waves.is_empty() {
        let rows: Vec<Vec<String>> = status
            .waves
            .iter()
            .map(|wave| {
                vec![
                    wave.name.clone(),
                    wave.phase.clone(),
                    wave.clusters.to_string(),
                    wave.updated.to_string(),
                    wave.ready.to_string(),
                    wave.done.to_string(),
                    wave.failed.to_string(),
                    self::text(wave.soak_remaining_seconds.map(seconds_text)),
                ]
            })
            .collect();
        text.push('\n');
        text.push_str(&aligned(
            &[
                "NAME",
                "PHASE",
                "CLUSTERS",
                "UPDATED",
                "READY",
                "DONE",
                "FAILED",
                "SOAK-REMAINING",
            ],
            &rows,
        )?);
    }
    if let Some(reason) = &status.reason {
        text.push('\n');
        rollout_fact(&mut text, "Reason", reason.reason.clone());
        rollout_fact(&mut text, "Message", one_line(&reason.message));
        rollout_fact(&mut text, "Wave", self::text(reason.wave.as_deref()));
        if !reason.failed_clusters.is_empty() {
            text.push_str("Failed clusters:\n");
        }
        for failed in &reason.failed_clusters {
            text.push_str(&format!("  {} ({})", failed.cluster, failed.reason));
            if !failed.message.is_empty() {
                text.push_str(&format!(": {}", one_line(&failed.message)));
            }
            text.push('\n');
            if !failed.objects.is_empty() {
                text.push_str(&format!("    objects: {}\n", failed.objects.join(", ")));
            }
        }
    }
    Ok(text)
}

/// `rollout status --watch` as one line per change: the phase, the wave in progress and its
/// counts, and why the run stopped.
pub fn rollout_progress_line(bundle: &str, status: &RolloutStatus) -> String {
    if status.phase.is_empty() {
        return format!(
            "bundle/{bundle} has no rollout (stable revision {})",
            status.stable_revision
        );
    }
    let mut line = format!("bundle/{bundle} {}", status.phase);
    if let Some(candidate) = status.candidate_revision {
        line.push_str(&format!(" revision {candidate}"));
    }
    if let Some((name, wave)) = current_wave(status) {
        line.push_str(&format!(
            ", wave {name}: {}/{} done, {} ready, {} failed",
            wave.done, wave.clusters, wave.ready, wave.failed
        ));
        if let Some(seconds) = wave.soak_remaining_seconds {
            line.push_str(&format!(", soak {} left", seconds_text(seconds)));
        }
    }
    if let Some(reason) = &status.reason {
        line.push_str(&format!(": {}", one_line(&reason.message)));
    }
    line
}

pub fn print_rollout_status(
    bundle: &str,
    status: &RolloutStatus,
    format: Format,
) -> anyhow::Result<()> {
    match format {
        Format::Json => print_json(&to_json(status)?),
        Format::Yaml => print_yaml(&to_json(status)?),
        Format::Table => out(&rollout_status_text(bundle, status)?),
    }
}

/// `history bundle NAME` as a table, newest revision first as the server sent them.
pub fn revisions_table(revisions: &[BundleRevision]) -> anyhow::Result<String> {
    let rows: Vec<Vec<String>> = revisions
        .iter()
        .map(|revision| {
            vec![
                revision.revision.to_string(),
                revision.generation.to_string(),
                short(&revision.digest),
                text(revision.commit.as_deref().map(short)),
                revision.author.clone(),
                age(Some(&revision.created)),
                revision.phase.clone(),
            ]
        })
        .collect();
    aligned(
        &[
            "REVISION",
            "GENERATION",
            "DIGEST",
            "COMMIT",
            "AUTHOR",
            "CREATED",
            "PHASE",
        ],
        &rows,
    )
}

pub fn print_revisions(revisions: &[BundleRevision], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => print_json(&json!({ "items": to_json(revisions)? })),
        Format::Yaml => print_yaml(&json!({ "items": to_json(revisions)? })),
        Format::Table if revisions.is_empty() => {
            eprintln!("No revisions found.");
            Ok(())
        }
        Format::Table => out(&revisions_table(revisions)?),
    }
}

#[cfg(test)]
mod tests {
    use flotilla_api::{FailedCluster, RolloutReason};

    use super::*;

    fn wave(name: &str, phase: &str, counts: [u64; 5]) -> WaveStatus {
        let [clusters, updated, ready, done, failed] = counts;
        WaveStatus {
            name: name.into(),
            phase: phase.into(),
            clusters,
            updated,
            ready,
            done,
            failed,
            ..WaveStatus::default()
        }
    }

    fn rolled_back() -> RolloutStatus {
        RolloutStatus {
            phase: "RolledBack".into(),
            stable_revision: 3,
            candidate_revision: Some(4),
            held_revision: Some(4),
            waves: vec![
                wave("canary", "Failed", [2, 2, 1, 1, 1]),
                wave("rest", "Waiting", [10, 0, 0, 0, 0]),
            ],
            reason: Some(RolloutReason {
                reason: "WaveFailed".into(),
                message: "wave canary: 1 of 2 clusters failed, at most 0 may".into(),
                wave: Some("canary".into()),
                failed_clusters: vec![
                    FailedCluster {
                        cluster: "store-3".into(),
                        reason: "Error".into(),
                        message: "ConfigMap apps/web: forbidden\n  retrying\n".into(),
                        objects: vec!["ConfigMap/apps/web".into()],
                    },
                    FailedCluster {
                        cluster: "store-9".into(),
                        reason: "Offline".into(),
                        ..FailedCluster::default()
                    },
                ],
            }),
            ..RolloutStatus::default()
        }
    }

    #[test]
    fn rollout_status_shows_revisions_a_row_per_wave_and_the_failed_clusters() {
        assert_eq!(
            rollout_status_text("web", &rolled_back()).unwrap(),
            "\
Bundle:     web
Phase:      RolledBack
Revisions:  stable 3, candidate 4, held 4

NAME     PHASE     CLUSTERS   UPDATED   READY   DONE   FAILED   SOAK-REMAINING
canary   Failed    2          2         1       1      1
rest     Waiting   10         0         0       0      0

Reason:     WaveFailed
Message:    wave canary: 1 of 2 clusters failed, at most 0 may
Wave:       canary
Failed clusters:
  store-3 (Error): ConfigMap apps/web: forbidden; retrying
    objects: ConfigMap/apps/web
  store-9 (Offline)
"
        );
    }

    #[test]
    fn a_running_wave_shows_its_place_and_soak_and_a_bundle_without_a_run_says_so() {
        let mut status = rolled_back();
        status.phase = "Progressing".into();
        status.held_revision = None;
        status.reason = None;
        status.current_wave = Some(1);
        status.waves[0] = wave("canary", "Done", [2, 2, 2, 2, 0]);
        status.waves[1] = WaveStatus {
            soak_remaining_seconds: Some(90),
            ..wave("rest", "Soaking", [10, 4, 3, 1, 0])
        };
        let text = rollout_status_text("web", &status).unwrap();
        assert!(text.contains("Wave:       rest (2/2)\n"), "{text}");
        assert!(
            text.contains(
                "rest     Soaking   10         4         3       1      0        1m30s\n"
            ),
            "{text}"
        );
        assert!(!text.contains("Reason:"), "{text}");
        assert_eq!(
            rollout_progress_line("web", &status),
            "bundle/web Progressing revision 4, wave rest (2/2): 1/10 done, 3 ready, 0 failed, soak 1m30s left"
        );

        let never = RolloutStatus {
            stable_revision: 1,
            ..RolloutStatus::default()
        };
        assert_eq!(
            rollout_status_text("web", &never).unwrap(),
            "Bundle:     web\nPhase:      None (no rollout has run)\nRevisions:  stable 1\n"
        );
        assert_eq!(
            rollout_progress_line("web", &never),
            "bundle/web has no rollout (stable revision 1)"
        );
    }

    #[test]
    fn a_stopped_runs_line_carries_its_reason_on_one_line() {
        let mut status = rolled_back();
        status.reason.as_mut().unwrap().message = "wave canary failed:\n1 of 2".into();
        assert_eq!(
            rollout_progress_line("web", &status),
            "bundle/web RolledBack revision 4: wave canary failed:; 1 of 2"
        );
    }

    #[test]
    fn history_rows_cut_digests_and_commits_and_show_the_age() {
        let three_hours_ago = humantime::format_rfc3339_seconds(
            std::time::SystemTime::now() - std::time::Duration::from_secs(3 * 3_600 + 60),
        )
        .to_string();
        let revisions = [
            BundleRevision {
                revision: 2,
                generation: 5,
                digest: "sha256:0123456789abcdef0123".into(),
                commit: Some("fedcba9876543210fedcba98".into()),
                author: "gitrepo/apps".into(),
                created: three_hours_ago.clone(),
                phase: "Candidate".into(),
                ..BundleRevision::default()
            },
            BundleRevision {
                revision: 1,
                generation: 4,
                digest: "sha256:aaaaaaaaaaaaaaaaaaaa".into(),
                author: "admin".into(),
                created: three_hours_ago,
                ..BundleRevision::default()
            },
        ];
        assert_eq!(
            revisions_table(&revisions).unwrap(),
            "\
REVISION   GENERATION   DIGEST         COMMIT         AUTHOR         CREATED   PHASE
2          5            0123456789ab   fedcba987654   gitrepo/apps   3h        Candidate
1          4            aaaaaaaaaaaa                  admin          3h
"
        );
    }
}
