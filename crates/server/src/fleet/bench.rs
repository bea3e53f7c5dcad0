//! The admin-write cost benchmark: an admin write's in-memory work (validate and build its store
//! ops under the read lock, then apply and release content under the write lock) must not grow
//! with the number of bundles. Not a timed test: it prints figures for docs/benchmarks.md.
//!
//! `cargo test --release -p flotilla-server --lib admin_write_cost -- --ignored --nocapture`

use std::time::{Duration, Instant};

use flotilla_api::{Bundle, BundleSpec, BundleTarget, LabelSelector, ObjectMeta};
use serde_json::json;

use super::{Fleet, clusters::NewCluster};
use crate::writes::{
    Mode,
    bundles::{apply as apply_bundle, prepare as prepare_bundle},
};

/// Clusters in the benchmark fleet: enough that each bundle targets some, few enough that
/// building the fleet takes no time next to 20,000 bundles.
const CLUSTERS: u32 = 1_000;
/// Timed applies per fleet size: enough for a stable p50 and p99.
const APPLIES: usize = 400;

fn bundle(name: &str, revision: usize, env: &str) -> Bundle {
    Bundle {
        api_version: flotilla_api::API_VERSION.into(),
        kind: "Bundle".into(),
        metadata: ObjectMeta {
            name: name.into(),
            ..ObjectMeta::default()
        },
        spec: BundleSpec {
            resources: vec![json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name},
                "data": {"revision": revision.to_string()},
            })],
            targets: vec![BundleTarget {
                cluster_selector: Some(LabelSelector {
                    match_labels: [("env".to_string(), env.to_string())].into(),
                    ..LabelSelector::default()
                }),
                ..BundleTarget::default()
            }],
            ..BundleSpec::default()
        },
        status: None,
    }
}

fn fleet_of(bundles: usize) -> Fleet {
    let mut fleet = Fleet::default();
    for ordinal in 0..CLUSTERS {
        let env = format!("env-{}", ordinal % 100);
        fleet.insert_cluster(NewCluster {
            name: format!("cluster-{ordinal:05}"),
            labels: [("env".to_string(), env)].into(),
            credential_hash: [0; 32],
            client_id: "bench".into(),
            generation: 1,
            revision: 1,
            created: 0,
        });
    }
    for index in 0..bundles {
        let name = format!("bundle-{index:06}");
        let prepared = prepare_bundle(
            &fleet,
            bundle(&name, 0, &format!("env-{}", index % 100)),
            Mode::Upsert,
            None,
        )
        .expect("valid bundle");
        // Set-up skips the release step: it is what is measured below.
        apply_bundle(&mut fleet, prepared, index as u64 + 1);
    }
    fleet
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn admin_write_cost() {
    println!("bundles  write-lock p50  write-lock p99  whole write p50  whole write p99");
    for bundles in [100usize, 1_000, 20_000] {
        let mut fleet = fleet_of(bundles);
        let mut locked = Vec::with_capacity(APPLIES);
        let mut whole = Vec::with_capacity(APPLIES);
        for apply in 0..APPLIES {
            // Each apply changes one bundle's content, spread over the fleet's bundles.
            let index = (apply * 7_919) % bundles;
            let name = format!("bundle-{index:06}");
            let started = Instant::now();
            let prepared = prepare_bundle(
                &fleet,
                bundle(&name, apply + 1, &format!("env-{}", index % 100)),
                Mode::Upsert,
                None,
            )
            .expect("valid bundle");
            let lock_started = Instant::now();
            apply_bundle(&mut fleet, prepared, (bundles + apply) as u64 + 1);
            locked.push(lock_started.elapsed());
            whole.push(started.elapsed());
        }
        assert_eq!(
            fleet.contents.len(),
            bundles,
            "one content per bundle is held"
        );
        locked.sort();
        whole.sort();
        println!(
            "{bundles:>7}  {:>14.1?}  {:>14.1?}  {:>15.1?}  {:>15.1?}",
            percentile(&locked, 0.5),
            percentile(&locked, 0.99),
            percentile(&whole, 0.5),
            percentile(&whole, 0.99),
        );
    }
}
