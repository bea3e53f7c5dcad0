//! What simulated clusters make of bundle content. A bundle deployment is judged exactly as an
//! agent driving a simulated cluster judges it (`flotilla_agent::simulated::simulate_content`:
//! parsed, customized for the cluster, then simulated), so a placeholder naming a label the
//! cluster lacks is an Error here as on a real agent. The verdict depends only on the content
//! and the customization options the server resolved for the cluster (placeholder values
//! included), so it is cached by those: a million clusters whose placeholders resolve alike are
//! judged once.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock},
};

use flotilla_api::{
    BundleState,
    agent::{BundleReport, DesiredBundle, ObjectProblem},
};
use parking_lot::Mutex;
use xxhash_rust::xxh3::Xxh3;

/// Verdicts held at once. Distinct (content, options) pairs are few in a fleet whose
/// placeholders name shared labels (region, env); a bundle using `${cluster.name}` has one per
/// cluster, and past this bound the cache starts over, so a re-judged cluster costs what one
/// agent's customization costs, never unbounded memory.
const MAX_VERDICTS: usize = 65_536;

/// Content bytes held at once: a few hundred typical bundles. Past it the cache starts over;
/// a cluster that then needs a new verdict for content it holds fetches it again.
const MAX_CONTENT_BYTES: usize = 64 << 20;

/// What one bundle deployment came to on a simulated cluster: its report, without the bundle's
/// name and deployment (filled in per cluster by [`Verdict::report`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub state: BundleState,
    pub message: Option<String>,
    pub problems: Vec<ObjectProblem>,
    pub more_problems: u32,
}

impl Verdict {
    fn of(report: BundleReport) -> Verdict {
        Verdict {
            state: report.state,
            message: report.message,
            problems: report.problems,
            more_problems: report.more_problems,
        }
    }

    /// The cluster's report of `bundle` with this verdict.
    pub fn report(&self, bundle: &DesiredBundle) -> BundleReport {
        BundleReport {
            bundle: bundle.name.clone(),
            deployment: bundle.deployment.clone(),
            state: self.state,
            message: self.message.clone(),
            problems: self.problems.clone(),
            more_problems: self.more_problems,
        }
    }

    /// An apply the configured `--fail-rate` failed.
    pub fn failed_by_rate() -> Arc<Verdict> {
        static FAILED: LazyLock<Arc<Verdict>> =
            LazyLock::new(|| Arc::new(rate_verdict(BundleState::Error, "simulated apply failure")));
        FAILED.clone()
    }

    /// An apply the configured `--not-ready-rate` keeps not ready.
    pub fn not_ready_by_rate() -> Arc<Verdict> {
        static NOT_READY: LazyLock<Arc<Verdict>> =
            LazyLock::new(|| Arc::new(rate_verdict(BundleState::NotReady, "simulated: not ready")));
        NOT_READY.clone()
    }
}

fn rate_verdict(state: BundleState, message: &str) -> Verdict {
    Verdict {
        state,
        message: Some(message.into()),
        problems: Vec::new(),
        more_problems: 0,
    }
}

/// What determines a deployment's verdict: the content digest and the options customization
/// reads (namespace, labels, patches, and the placeholder values the server resolved for this
/// cluster, which are exactly the labels and values its manifests use). Keep-resources and the
/// drift policy do not change what is applied. 128 bits: no two of a million keys collide.
pub fn verdict_key(bundle: &DesiredBundle) -> u128 {
    let options = &bundle.options;
    let customization = (
        &options.namespace,
        &options.labels,
        &options.patches,
        &options.vars,
    );
    let mut hasher = Xxh3::new();
    hasher.update(bundle.digest.as_bytes());
    hasher.update(&[0]);
    hasher.update(&serde_json::to_vec(&customization).unwrap_or_default());
    hasher.digest128()
}

/// Verified content by digest, and verdicts by [`verdict_key`]; both bounded.
#[derive(Debug)]
pub struct Verdicts {
    contents: Mutex<Contents>,
    verdicts: Mutex<HashMap<u128, Arc<Verdict>>>,
    max_verdicts: usize,
    max_content_bytes: usize,
}

impl Default for Verdicts {
    fn default() -> Verdicts {
        Verdicts::with_bounds(MAX_VERDICTS, MAX_CONTENT_BYTES)
    }
}

#[derive(Debug, Default)]
struct Contents {
    by_digest: HashMap<String, Arc<[u8]>>,
    bytes: usize,
}

impl Verdicts {
    fn with_bounds(max_verdicts: usize, max_content_bytes: usize) -> Verdicts {
        Verdicts {
            contents: Mutex::default(),
            verdicts: Mutex::default(),
            max_verdicts,
            max_content_bytes,
        }
    }

    /// The cached verdict for `key`, if any.
    pub fn cached(&self, key: u128) -> Option<Arc<Verdict>> {
        self.verdicts.lock().get(&key).cloned()
    }

    /// Whether verified content for `digest` is held.
    pub fn has_content(&self, digest: &str) -> bool {
        self.contents.lock().by_digest.contains_key(digest)
    }

    /// Verified content for `digest`, if held.
    pub fn content(&self, digest: &str) -> Option<Arc<[u8]>> {
        self.contents.lock().by_digest.get(digest).cloned()
    }

    /// Holds content the caller verified against `digest`.
    pub fn keep_content(&self, digest: &str, bytes: &[u8]) {
        let mut contents = self.contents.lock();
        if contents.by_digest.contains_key(digest) {
            return;
        }
        if contents.bytes + bytes.len() > self.max_content_bytes {
            contents.by_digest.clear();
            contents.bytes = 0;
        }
        contents.bytes += bytes.len();
        contents.by_digest.insert(digest.to_string(), bytes.into());
    }

    /// The verdict on `bundle` with this verified content, judged as the agent judges it and
    /// cached under `key` (its [`verdict_key`]).
    pub fn judge(&self, key: u128, bundle: &DesiredBundle, content: &[u8]) -> Arc<Verdict> {
        if let Some(verdict) = self.cached(key) {
            return verdict;
        }
        let report = flotilla_agent::simulated::simulate_content(bundle, content);
        let verdict = Arc::new(Verdict::of(report));
        let mut verdicts = self.verdicts.lock();
        if verdicts.len() >= self.max_verdicts {
            verdicts.clear();
        }
        verdicts.entry(key).or_insert(verdict).clone()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.verdicts.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use flotilla_api::agent::DeployOptions;
    use flotilla_core::digest::{canonical_content, content_digest};
    use serde_json::json;

    use super::*;

    fn content() -> Vec<u8> {
        canonical_content(&[json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "web"},
            "data": {"region": "${cluster.labels.region}"},
        })])
    }

    fn bundle(deployment: &str, vars: &[(&str, &str)]) -> DesiredBundle {
        DesiredBundle {
            name: "web".into(),
            deployment: deployment.into(),
            digest: content_digest(&content()),
            options: DeployOptions {
                vars: vars
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
                ..DeployOptions::default()
            },
        }
    }

    #[test]
    fn clusters_whose_placeholders_resolve_alike_share_one_verdict() {
        let verdicts = Verdicts::default();
        let content = content();
        let one = bundle("d1", &[("cluster.labels.region", "eu")]);
        let other = bundle("d1", &[("cluster.labels.region", "eu")]);
        let first = verdicts.judge(verdict_key(&one), &one, &content);
        let second = verdicts.judge(verdict_key(&other), &other, &content);
        assert!(Arc::ptr_eq(&first, &second), "judged once");
        assert_eq!(first.state, BundleState::Ready);
        let elsewhere = bundle("d2", &[("cluster.labels.region", "us")]);
        assert_ne!(verdict_key(&one), verdict_key(&elsewhere));
        let unlabelled = bundle("d3", &[]);
        let missing = verdicts.judge(verdict_key(&unlabelled), &unlabelled, &content);
        assert_eq!(missing.state, BundleState::Error);
        assert!(
            missing
                .message
                .as_deref()
                .is_some_and(|m| m.contains("no label \"region\"")),
            "{missing:?}"
        );
        assert_eq!(verdicts.len(), 2);
        assert_eq!(
            missing.report(&unlabelled).deployment,
            "d3",
            "the report names the cluster's own deployment"
        );
    }

    #[test]
    fn what_customization_ignores_does_not_split_the_cache() {
        let mut kept = bundle("d1", &[("cluster.labels.region", "eu")]);
        let plain = kept.clone();
        kept.options.keep_resources = true;
        kept.name = "other-name".into();
        assert_eq!(verdict_key(&kept), verdict_key(&plain));
        let mut namespaced = plain.clone();
        namespaced.options.namespace = Some("apps".into());
        assert_ne!(verdict_key(&namespaced), verdict_key(&plain));
    }

    #[test]
    fn the_caches_stay_bounded() {
        let verdicts = Verdicts::with_bounds(16, 1_000);
        let content = content();
        for index in 0..40 {
            let value = index.to_string();
            let bundle = bundle("d", &[("cluster.labels.region", &value)]);
            verdicts.judge(verdict_key(&bundle), &bundle, &content);
            assert!(verdicts.len() <= 16);
        }
        let big = vec![b' '; 501];
        verdicts.keep_content("sha256:a", &big);
        verdicts.keep_content("sha256:b", &big);
        assert!(verdicts.contents.lock().bytes <= 1_000);
        assert!(verdicts.has_content("sha256:b"));
        assert!(!verdicts.has_content("sha256:a"));
    }
}
