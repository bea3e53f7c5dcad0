//! How the Kubernetes driver waits for what the API server is not ready for, against the
//! stand-in: custom resources until their CRD reports `Established`, and every bundle while the
//! API does not answer (reported as Error, one warning per outage).

mod support;

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use flotilla_agent::{ClusterDriver, kubernetes::KubernetesCluster};
use flotilla_api::{BundleState, agent::DeployOptions};
use serde_json::json;
use support::{
    driver::{apply, config_map, crd, desired, report, widget},
    stand_in_apiserver::StandInApiServer,
};

fn widget_writes(api: &StandInApiServer) -> usize {
    api.requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.contains("/widgets/"))
        .count()
}

#[tokio::test]
async fn custom_resources_are_not_applied_until_their_crd_reports_established() {
    let api = StandInApiServer::start().await;
    // Discovery already serves Widget, but the CRD is not Established yet.
    api.set_auto_establish(false);
    api.set_serve_before_established(true);
    let mut driver = KubernetesCluster::new(api.client(), 30, None);
    let bundle = desired("widgets", "d1", DeployOptions::default());
    apply(&mut driver, &bundle, &[widget(), crd()]).await;
    for pass in 0..3 {
        let report = report(&mut driver, "widgets").await;
        assert_eq!(
            report.state,
            BundleState::NotReady,
            "pass {pass}: {report:?}"
        );
        assert!(
            report.problems.iter().any(|p| p.kind == "Widget"
                && p.message
                    .contains("waiting for the CustomResourceDefinition")),
            "{report:?}"
        );
        assert_eq!(widget_writes(&api), 0, "pass {pass}: no Widget sent yet");
        driver.refresh(pass % 2 == 1).await;
    }
    api.establish("widgets.example.com");
    assert!(driver.refresh(false).await);
    let report = report(&mut driver, "widgets").await;
    assert_eq!(report.state, BundleState::Ready, "{report:?}");
    assert!(
        api.get("example.com/v1", "Widget", Some("default"), "w")
            .is_some()
    );
    assert_eq!(widget_writes(&api), 1);
}

/// A `tracing` writer that keeps what was logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines_containing(&self, text: &str) -> usize {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|line| line.contains(text))
            .count()
    }
}

#[tokio::test]
async fn an_unreachable_kubernetes_api_turns_every_bundle_to_error_with_one_warning() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let api = StandInApiServer::start().await;
    let mut driver = KubernetesCluster::new(api.client(), 30, None);
    let web = desired("web", "d1", DeployOptions::default());
    let db = desired("db", "d1", DeployOptions::default());
    apply(&mut driver, &web, &[config_map("web", json!({}))]).await;
    apply(&mut driver, &db, &[config_map("db", json!({}))]).await;

    api.set_available(false);
    assert!(driver.refresh(false).await, "the reports changed");
    for pass in 0..4 {
        if pass > 0 {
            assert!(
                !driver.refresh(pass % 2 == 0).await,
                "pass {pass}: nothing new to report while the API stays down"
            );
        }
        for report in driver.reports().await {
            assert_eq!(report.state, BundleState::Error, "{report:?}");
            assert!(
                report
                    .message
                    .as_deref()
                    .unwrap_or_default()
                    .starts_with("Kubernetes API unreachable"),
                "{report:?}"
            );
        }
    }
    assert_eq!(
        captured.lines_containing("Kubernetes API unreachable"),
        1,
        "one warning per outage, not one per attempt"
    );

    api.set_available(true);
    assert!(driver.refresh(false).await, "the reports changed back");
    for report in driver.reports().await {
        assert_eq!(report.state, BundleState::Ready, "{report:?}");
    }
    assert_eq!(captured.lines_containing("WARN"), 1);
}
