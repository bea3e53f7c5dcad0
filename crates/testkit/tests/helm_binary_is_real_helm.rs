//! Rule: helm_binary() yields a real, working helm (v4 or v3) that can create and render a chart.

use std::time::Duration;

use flotilla_testkit::{helm_binary, helm_command, run_checked};

const HELM_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn helm_binary_is_real_helm() {
    let started = std::time::Instant::now();
    let helm = helm_binary().unwrap();
    println!(
        "helm_binary() = {} ({:.1?})",
        helm.display(),
        started.elapsed()
    );
    // Cached for the process: the same answer, instantly.
    assert_eq!(helm_binary().unwrap(), helm);

    let home = tempfile::tempdir().unwrap();
    let version = run_checked(
        helm_command(home.path()).unwrap().arg("version"),
        HELM_TIMEOUT,
    )
    .unwrap();
    println!("helm version: {version}");
    assert!(
        version.contains("Version:\"v4.") || version.contains("Version:\"v3."),
        "{version}"
    );
}

#[test]
fn helm_creates_and_templates_a_chart() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let chart = work.path().join("demo");
    run_checked(
        helm_command(home.path()).unwrap().arg("create").arg(&chart),
        HELM_TIMEOUT,
    )
    .unwrap();
    assert!(chart.join("Chart.yaml").is_file());
    let rendered = run_checked(
        helm_command(home.path())
            .unwrap()
            .args([
                "template",
                "rel",
                "--namespace",
                "apps",
                "--set",
                "replicaCount=3",
            ])
            .arg(&chart),
        HELM_TIMEOUT,
    )
    .unwrap();
    assert!(rendered.contains("kind: Deployment"), "{rendered}");
    assert!(rendered.contains("replicas: 3"), "{rendered}");
    assert!(rendered.contains("name: rel-demo"), "{rendered}");
}
