//! `flotilla bench all` on a small fleet, as a user runs it: the real binary starts its own
//! server, drives every scenario, and writes a result with filled series and a report with
//! plotted data. No timing assertions: speed is judged from bench results, not tests.

mod support;

use std::process::Command;

use serde_json::Value;

const CLUSTERS: u64 = 200;

#[test]
fn bench_all_writes_a_result_with_every_phase_and_a_report_with_plotted_data() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench");
    let output = Command::new(support::BIN)
        .args([
            "bench",
            "all",
            "--clusters",
            &CLUSTERS.to_string(),
            "--interval",
            "2s",
            "--duration",
            "3s",
            "--api-duration",
            "2s",
            "--api-users",
            "2",
            "--concurrency",
            "64",
            "--connections",
            "2",
            "--no-progress",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "bench failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value =
        serde_json::from_slice(&std::fs::read(out.join("result.json")).unwrap()).unwrap();

    assert_eq!(result["scenario"], "all");
    assert!(result["command"].as_str().unwrap().contains("bench all"));
    assert!(!result["commit"].as_str().unwrap().is_empty());
    assert!(result["machine"]["cores"].as_u64().unwrap() >= 1);

    assert_eq!(result["register"]["clusters"].as_u64(), Some(CLUSTERS));
    assert_eq!(result["register"]["errors"].as_u64(), Some(0));
    assert_eq!(
        result["converge"]["deployments"].as_u64(),
        Some(CLUSTERS * 4)
    );
    assert!(result["steady"]["syncs"].as_u64().unwrap() > 0);
    assert_eq!(result["steady"]["errors"].as_u64(), Some(0));
    assert!(
        result["steady"]["serverCpuMicrosPerSync"]
            .as_f64()
            .is_some()
    );
    assert!(
        result["rollout"]["secondsTo100"].as_f64().is_some(),
        "rollout reached every cluster"
    );
    assert_eq!(result["rollout"]["desired"].as_u64(), Some(CLUSTERS));
    let operations = result["api"]["operations"].as_array().unwrap();
    assert_eq!(operations.len(), 7);
    for operation in operations {
        assert!(operation["count"].as_u64().unwrap() > 0, "{operation}");
        assert_eq!(operation["errors"].as_u64(), Some(0), "{operation}");
    }
    let restart = &result["restart"];
    assert!(restart["acknowledgedWrites"].as_u64().unwrap() > 0);
    assert_eq!(
        restart["lostWrites"].as_array().unwrap().len(),
        0,
        "{restart}"
    );
    assert_eq!(restart["clustersAfter"].as_u64(), Some(CLUSTERS));
    assert!(
        restart["secondsToAllOnline"].as_f64().is_some(),
        "{restart}"
    );

    let phases: Vec<&str> = result["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|phase| phase["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "register", "converge", "steady", "rollout", "api", "restart"
        ]
    );
    let ids: Vec<&str> = result["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|verdict| verdict["id"].as_str().unwrap())
        .collect();
    for id in ["P1", "P2", "P3", "P4", "P5", "P6", "P7"] {
        assert!(ids.contains(&id), "verdict {id} missing from {ids:?}");
    }

    // Every series the report plots has data.
    let samples = result["samples"].as_array().unwrap();
    assert!(samples.len() >= 5, "{} samples", samples.len());
    let filled = |field: &str| {
        samples
            .iter()
            .any(|sample| sample[field].as_f64().is_some_and(|v| v > 0.0))
    };
    for field in [
        "registered",
        "online",
        "syncsPerSecond",
        "syncP99Ms",
        "serverCpuCores",
        "serverRssMib",
        "bundlesReady",
        "bundlesDesired",
        "serverOnline",
    ] {
        assert!(filled(field), "series {field} is empty");
    }

    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 6, "six charts");
    let plotted = html
        .split("<polyline")
        .skip(1)
        .filter(|line| {
            let points = line
                .split("points=\"")
                .nth(1)
                .and_then(|p| p.split('"').next());
            points.is_some_and(|p| p.split_whitespace().count() >= 3)
        })
        .count();
    assert!(
        plotted >= 6,
        "only {plotted} plotted lines with data points"
    );
    for verdict in ["P2", "P3", "P5"] {
        assert!(
            html.contains(&format!("<td>{verdict}</td>")),
            "report lists {verdict}"
        );
    }
}
