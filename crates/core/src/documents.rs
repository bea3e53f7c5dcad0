//! One validator per document: every rule a well-formed document must keep, wherever it arrives
//! (admin API, git render, agent registration, CLI), answered with a [`FieldError`] naming the
//! field to fix. What a validator compiles on the way (targets, selectors, the content digest)
//! is returned, so the write path carries it to memory instead of compiling it again.
//!
//! Invariant: a rule lives here once; callers choose no status per rule (a `FieldError` is always
//! "well-formed but breaks a rule", 422 on HTTP).

use std::{collections::BTreeSet, time::Duration};

use flotilla_api::{
    Bundle, BundleDependency, Cluster, ClusterFacts, ClusterGroup, DriftPolicy, GitRepo,
    GitRepoSpec, RegistrationToken, Secret, agent::RegisterRequest,
};

pub use crate::field_error::FieldError;
use crate::{
    customize::validate_manifests,
    digest::{canonical_content, content_digest},
    rollout::strategy::{self, Strategy},
    selector::Selector,
    targeting::{Target, check_customizations, compile_targets, vars_needed},
    validate::{MAX_LABELS, shown, validate_dns_label, validate_dns_subdomain, validate_labels},
};

/// Checks a label set under `field` (`metadata.labels`, `spec.labels`, `labels`).
pub fn labels(
    field: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<(), FieldError> {
    validate_labels(field, labels).map_err(|message| FieldError::new(field, message))
}

/// A compiled `spec.dependsOn` entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Dependency {
    Name(String),
    Selector(Selector),
}

/// Compiles `spec.dependsOn`; the error names the entry.
pub fn dependencies(depends_on: &[BundleDependency]) -> Result<Vec<Dependency>, FieldError> {
    depends_on
        .iter()
        .enumerate()
        .map(
            |(index, dependency)| match (&dependency.name, &dependency.selector) {
                (Some(name), None) if !name.is_empty() => Ok(Dependency::Name(name.clone())),
                (None, Some(selector)) => Selector::from_api(selector)
                    .map(Dependency::Selector)
                    .map_err(|e| {
                        let field = format!("spec.dependsOn[{index}].selector");
                        FieldError::new(field.clone(), format!("{field}: {e}"))
                    }),
                _ => {
                    let field = format!("spec.dependsOn[{index}]");
                    Err(FieldError::new(
                        field.clone(),
                        format!("{field}: set exactly one of name or selector"),
                    ))
                }
            },
        )
        .collect()
}

/// Checks that `text` is an RFC 6901 JSON pointer to a field (not the whole object): the agent
/// reads drift ignore paths with `jsonptr`, where a pointer the RFC refuses matches nothing.
pub fn field_pointer(text: &str) -> Result<(), String> {
    let pointer = jsonptr::Pointer::parse(text).map_err(|error| error.to_string())?;
    if pointer.is_root() {
        return Err("it names the whole object".into());
    }
    Ok(())
}

/// Checks `spec.drift`: every ignore rule lists JSON pointers.
pub fn drift(drift: &DriftPolicy) -> Result<(), FieldError> {
    for (index, ignore) in drift.ignore.iter().enumerate() {
        if ignore.paths.is_empty() {
            let field = format!("spec.drift.ignore[{index}].paths");
            return Err(FieldError::new(
                field.clone(),
                format!("{field}: list at least one JSON pointer, e.g. /spec/replicas"),
            ));
        }
        for (number, path) in ignore.paths.iter().enumerate() {
            if let Err(error) = field_pointer(path) {
                let field = format!("spec.drift.ignore[{index}].paths[{number}]");
                return Err(FieldError::new(
                    field.clone(),
                    format!(
                        "{field}: {path:?} is not a JSON pointer to a field ({error}); write it like /spec/replicas"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The targets of a revision, compiled: selectors, target content digests, the placeholders the
/// content and patches use.
#[derive(Debug, Clone)]
pub struct CompiledTargets {
    pub targets: Vec<Target>,
    pub vars: BTreeSet<String>,
}

/// Compiles a revision's targets and checks its drift policy (what a live revision needs).
pub fn revision(
    resources: &[serde_json::Value],
    targets: &[flotilla_api::BundleTarget],
    drift_policy: &DriftPolicy,
) -> Result<CompiledTargets, FieldError> {
    let compiled = compile_targets(targets).map_err(|e| FieldError::new("spec.targets", e))?;
    drift(drift_policy)?;
    Ok(CompiledTargets {
        targets: compiled,
        vars: vars_needed(resources, targets),
    })
}

/// A valid bundle: its canonical content and digest, compiled targets, dependencies and rollout
/// strategy.
#[derive(Debug, Clone)]
pub struct ValidBundle {
    pub content: Vec<u8>,
    pub digest: String,
    pub compiled: CompiledTargets,
    pub dependencies: Vec<Dependency>,
    /// `spec.rollout`, compiled; `None` when the bundle has none (changes reach every cluster at
    /// once).
    pub rollout: Option<Strategy>,
}

/// Most revisions `spec.revisionHistoryLimit` may keep beyond those clusters are pinned to: each
/// holds its content (and its targets' content) in the store, so a bundle of a few MiB keeping
/// 100 stays within a few hundred MiB; undo rarely reaches further back than a handful.
pub const MAX_REVISION_HISTORY_LIMIT: u32 = 100;

/// Checks `spec.revisionHistoryLimit`: 1 to [`MAX_REVISION_HISTORY_LIMIT`].
pub fn revision_history_limit(limit: Option<u32>) -> Result<(), FieldError> {
    match limit {
        Some(limit) if !(1..=MAX_REVISION_HISTORY_LIMIT).contains(&limit) => Err(FieldError::new(
            "spec.revisionHistoryLimit",
            format!(
                "spec.revisionHistoryLimit {limit} is out of range: keep 1 to {MAX_REVISION_HISTORY_LIMIT} revisions, or leave it unset for 10"
            ),
        )),
        _ => Ok(()),
    }
}

/// Checks a bundle: name, labels, manifests, targets and their customizations, drift policy,
/// `dependsOn` (a cycle through other bundles needs the fleet: the server checks it), rollout
/// strategy and revision history limit.
pub fn bundle(bundle: &Bundle) -> Result<ValidBundle, FieldError> {
    let name = &bundle.metadata.name;
    validate_dns_subdomain(name)
        .map_err(|e| FieldError::new("metadata.name", format!("bundle {e}")))?;
    labels("metadata.labels", &bundle.metadata.labels)?;
    let spec = &bundle.spec;
    validate_manifests(&spec.resources)
        .map_err(|e| FieldError::new("spec.resources", format!("spec.resources: {e}")))?;
    let compiled = revision(&spec.resources, &spec.targets, &spec.drift)?;
    let dependencies = dependencies(&spec.depends_on)?;
    if let Some(index) = spec
        .depends_on
        .iter()
        .position(|d| d.name.as_deref() == Some(name.as_str()))
    {
        let field = format!("spec.dependsOn[{index}]");
        return Err(FieldError::new(
            field.clone(),
            format!("{field}: a bundle cannot depend on itself"),
        ));
    }
    check_customizations(&spec.resources, &spec.targets)
        .map_err(|e| FieldError::new("spec.targets", e))?;
    let rollout = match &spec.rollout {
        Some(rollout) => Some(strategy::compile(name, rollout)?),
        None => None,
    };
    revision_history_limit(spec.revision_history_limit)?;
    let content = canonical_content(&spec.resources);
    let digest = content_digest(&content);
    Ok(ValidBundle {
        content,
        digest,
        compiled,
        dependencies,
        rollout,
    })
}

/// Checks a cluster group; returns its compiled selector.
pub fn cluster_group(group: &ClusterGroup) -> Result<Selector, FieldError> {
    validate_dns_subdomain(&group.metadata.name)
        .map_err(|e| FieldError::new("metadata.name", format!("cluster group {e}")))?;
    labels("metadata.labels", &group.metadata.labels)?;
    Selector::from_api(&group.spec.selector)
        .map_err(|e| FieldError::new("spec.selector", format!("spec.selector: {e}")))
}

/// Checks an admin's edit of a cluster (only labels can change).
pub fn cluster(cluster: &Cluster) -> Result<(), FieldError> {
    labels("metadata.labels", &cluster.metadata.labels)
}

/// The longest token lifetime a write accepts: past it, "never expires" (no ttl) says it
/// better, and every expiry stays far inside what RFC 3339 can write (year 9999).
/// A year is humantime's (365.25 days), so `ttl: 100y` is accepted.
pub const MAX_TOKEN_TTL_SECONDS: u64 = 100 * 31_557_600;

/// Checks a registration token (its name, when generated, is the caller's); returns when it
/// expires, in Unix seconds (`now` is the write's time), or none for a token that never does.
pub fn registration_token(token: &RegistrationToken, now: u64) -> Result<Option<u64>, FieldError> {
    validate_dns_label(&token.metadata.name)
        .map_err(|e| FieldError::new("metadata.name", format!("registration token {e}")))?;
    labels("metadata.labels", &token.metadata.labels)?;
    labels("spec.labels", &token.spec.labels)?;
    let expires_at = match (&token.spec.ttl, &token.spec.expires_at) {
        (Some(_), Some(_)) => {
            return Err(FieldError::new(
                "spec.ttl",
                "set either spec.ttl or spec.expiresAt, not both",
            ));
        }
        (Some(ttl), None) => {
            let parsed = humantime::parse_duration(ttl).map_err(|e| {
                FieldError::new(
                    "spec.ttl",
                    format!("spec.ttl {ttl:?}: {e}; write e.g. 1h or 30m"),
                )
            })?;
            if parsed.as_secs() > MAX_TOKEN_TTL_SECONDS {
                return Err(FieldError::new(
                    "spec.ttl",
                    format!(
                        "spec.ttl {ttl:?} is longer than 100 years; leave spec.ttl unset for a token that never expires"
                    ),
                ));
            }
            Some(now + parsed.as_secs().max(1))
        }
        (None, Some(at)) => {
            let parsed = humantime::parse_rfc3339_weak(at).map_err(|e| {
                FieldError::new(
                    "spec.expiresAt",
                    format!(
                        "spec.expiresAt {at:?}: {e}; write an RFC 3339 time such as 2030-01-01T00:00:00Z"
                    ),
                )
            })?;
            let seconds = parsed
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            if seconds > now.saturating_add(MAX_TOKEN_TTL_SECONDS) {
                return Err(FieldError::new(
                    "spec.expiresAt",
                    format!(
                        "spec.expiresAt {at:?} is more than 100 years away; leave it unset for a token that never expires"
                    ),
                ));
            }
            Some(seconds)
        }
        (None, None) => None,
    };
    if token.spec.max_uses == Some(0) {
        return Err(FieldError::new(
            "spec.maxUses",
            "spec.maxUses 0 would refuse every registration; give 1 or more, or leave it unset for no limit",
        ));
    }
    Ok(expires_at)
}

/// Longest client id an agent may register with.
pub const MAX_CLIENT_ID_CHARS: usize = 256;

/// Checks a registration request (its token is checked against the fleet by the server).
pub fn registration(request: &RegisterRequest) -> Result<(), FieldError> {
    validate_dns_label(&request.name)
        .map_err(|e| FieldError::new("name", format!("cluster {e}")))?;
    if request.client_id.is_empty() || request.client_id.len() > MAX_CLIENT_ID_CHARS {
        return Err(FieldError::new(
            "clientId",
            "clientId must be 1 to 256 characters identifying the agent installation",
        ));
    }
    labels("labels", &request.labels)?;
    facts(&request.facts)
}

/// The labels a registering cluster gets: its own, with the token's winning on conflict;
/// refused when together they pass [`MAX_LABELS`].
pub fn registered_labels(
    asked: &std::collections::BTreeMap<String, String>,
    token: &std::collections::BTreeMap<String, String>,
) -> Result<std::collections::BTreeMap<String, String>, FieldError> {
    let mut labels = asked.clone();
    labels.extend(token.iter().map(|(k, v)| (k.clone(), v.clone())));
    if labels.len() > MAX_LABELS {
        return Err(FieldError::new(
            "labels",
            format!(
                "labels: with the registration token's labels the cluster would carry {} labels; a cluster may carry at most {MAX_LABELS}: ask for fewer",
                labels.len()
            ),
        ));
    }
    Ok(labels)
}

/// Longest text kept in a fact (`agentVersion`, `kubernetesVersion`): Kubernetes versions such
/// as `v1.31.2+k3s1` or `v1.29.4-eks-036c24b` are under 40 characters.
pub const MAX_FACT_CHARS: usize = 128;
/// Most `capacity` entries in facts: the agent reports `cpu` and `pods`; room for extended
/// resources (GPUs and the like) a future agent may add.
pub const MAX_CAPACITY_ENTRIES: usize = 32;
/// Longest `capacity` key: a Kubernetes resource name (DNS prefix of 253, `/`, name of 63).
pub const MAX_CAPACITY_KEY_CHARS: usize = 317;
/// Longest `capacity` value: a quantity such as `128974848Ki` or `1500m`.
pub const MAX_CAPACITY_VALUE_CHARS: usize = 64;

/// Checks facts against the bounds a real agent never comes near: refused, not cut, so the
/// cluster never shows facts it did not send.
pub fn facts(facts: &ClusterFacts) -> Result<(), FieldError> {
    let too_long = |field: &str, text: &str, most: usize| {
        FieldError::new(
            format!("facts.{field}"),
            format!(
                "facts.{field} {} is {} characters; send at most {most}",
                shown(text),
                text.chars().count()
            ),
        )
    };
    for (field, text) in [
        ("agentVersion", &facts.agent_version),
        ("kubernetesVersion", &facts.kubernetes_version),
    ] {
        if let Some(text) = text
            && text.chars().count() > MAX_FACT_CHARS
        {
            return Err(too_long(field, text, MAX_FACT_CHARS));
        }
    }
    if facts.capacity.len() > MAX_CAPACITY_ENTRIES {
        return Err(FieldError::new(
            "facts.capacity",
            format!(
                "facts.capacity has {} entries; send at most {MAX_CAPACITY_ENTRIES}",
                facts.capacity.len()
            ),
        ));
    }
    for (key, value) in &facts.capacity {
        if key.chars().count() > MAX_CAPACITY_KEY_CHARS {
            return Err(too_long("capacity key", key, MAX_CAPACITY_KEY_CHARS));
        }
        if value.chars().count() > MAX_CAPACITY_VALUE_CHARS {
            return Err(too_long(
                &format!("capacity.{}", shown(key)),
                value,
                MAX_CAPACITY_VALUE_CHARS,
            ));
        }
    }
    Ok(())
}

/// Shortest and longest accepted GitRepo poll intervals.
pub const MIN_POLL: Duration = Duration::from_secs(1);
pub const MAX_POLL: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_POLL: Duration = Duration::from_secs(60);

/// The poll interval a GitRepo spec asks for (validated on write).
pub fn poll_interval(spec: &GitRepoSpec) -> Duration {
    spec.poll_interval
        .as_deref()
        .and_then(|text| humantime::parse_duration(text).ok())
        .unwrap_or(DEFAULT_POLL)
        .clamp(MIN_POLL, MAX_POLL)
}

/// Rejects refs that git would read as options or that are not valid ref names.
fn git_ref(field: &str, value: &str) -> Result<(), FieldError> {
    let bad = value.is_empty()
        || value.starts_with('-')
        || value.starts_with('/')
        || value.ends_with('/')
        || value.ends_with(".lock")
        || value.contains("..")
        || value.contains("@{")
        || value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c));
    if bad {
        return Err(FieldError::new(
            field,
            format!("{field}: {value:?} is not a valid git branch, tag or commit name"),
        ));
    }
    Ok(())
}

/// Accepts the URL forms git fetches from; rejects anything git could read as an option.
fn repo_url(url: &str) -> Result<(), FieldError> {
    let invalid = |message: String| Err(FieldError::new("spec.repo", message));
    let scp_like = !url.contains("://")
        && url.split_once(':').is_some_and(|(host, path)| {
            !host.is_empty() && !host.contains('/') && !path.is_empty()
        });
    let known_scheme = ["https://", "http://", "git://", "ssh://", "file://"]
        .iter()
        .any(|scheme| url.starts_with(scheme) && url.len() > scheme.len());
    if url.starts_with('-') || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return invalid(format!("spec.repo: {url:?} is not a repository URL"));
    }
    if url.contains("::") {
        return invalid(format!(
            "spec.repo: {url:?} names a git remote helper; use https://, http://, git://, ssh://, file:// or user@host:path"
        ));
    }
    if let Some((_, rest)) = url.split_once("://")
        && let Some(authority) = rest.split('/').next()
        && authority
            .rsplit_once('@')
            .is_some_and(|(userinfo, _)| userinfo.contains(':'))
    {
        return invalid(
            "spec.repo: the URL carries a password; put credentials in a Secret (type basic-auth) and name it in spec.clientSecretName".into(),
        );
    }
    if !(known_scheme || scp_like) {
        return invalid(format!(
            "spec.repo: {url:?} is not a repository URL; use https://, http://, git://, ssh://, file:// or user@host:path"
        ));
    }
    Ok(())
}

/// Folders are relative to the repository root and stay inside it.
fn repo_path(index: usize, path: &str) -> Result<(), FieldError> {
    let escapes = path.starts_with('/')
        || path.split('/').any(|segment| segment == "..")
        || path.contains('\\')
        || path.chars().any(char::is_control);
    if escapes {
        let field = format!("spec.paths[{index}]");
        return Err(FieldError::new(
            field.clone(),
            format!("{field}: {path:?} must be a folder inside the repository, like apps/web"),
        ));
    }
    Ok(())
}

/// Checks a GitRepo.
pub fn git_repo(repo: &GitRepo) -> Result<(), FieldError> {
    validate_dns_label(&repo.metadata.name)
        .map_err(|e| FieldError::new("metadata.name", format!("git repo {e}")))?;
    labels("metadata.labels", &repo.metadata.labels)?;
    let spec = &repo.spec;
    repo_url(&spec.repo)?;
    if spec.branch.is_some() && spec.revision.is_some() {
        return Err(FieldError::new(
            "spec.revision",
            "spec.branch and spec.revision are both set; set one (a branch to follow, or a tag or commit to pin)",
        ));
    }
    if let Some(branch) = &spec.branch {
        git_ref("spec.branch", branch)?;
    }
    if let Some(revision) = &spec.revision {
        git_ref("spec.revision", revision)?;
    }
    for (index, path) in spec.paths.iter().enumerate() {
        repo_path(index, path)?;
    }
    if let Some(text) = &spec.poll_interval {
        let interval = humantime::parse_duration(text).map_err(|e| {
            FieldError::new(
                "spec.pollInterval",
                format!(
                    "spec.pollInterval: {text:?} is not a duration ({e}); write it like 60s or 5m"
                ),
            )
        })?;
        if !(MIN_POLL..=MAX_POLL).contains(&interval) {
            return Err(FieldError::new(
                "spec.pollInterval",
                format!(
                    "spec.pollInterval: {text} is out of range; use 1s to 24h (webhooks trigger fetches at once)"
                ),
            ));
        }
    }
    if let Some(secret) = &spec.client_secret_name {
        validate_dns_label(secret).map_err(|e| {
            FieldError::new(
                "spec.clientSecretName",
                format!("spec.clientSecretName: {e}"),
            )
        })?;
    }
    compile_targets(&spec.targets).map_err(|e| FieldError::new("spec.targets", e))?;
    if spec.targets.iter().any(|t| t.resources.is_some()) {
        return Err(FieldError::new(
            "spec.targets",
            "spec.targets[].resources: a GitRepo's manifests come from the repository; remove resources from its targets",
        ));
    }
    Ok(())
}

/// Secret types: the keys each requires, and the ones it may carry besides.
const SECRET_TYPES: &[(&str, &[&str], &[&str])] = &[
    ("basic-auth", &["username", "password"], &[]),
    ("ssh-auth", &["ssh-privatekey", "known_hosts"], &[]),
    ("webhook", &[], &["github", "gitlab"]),
];

/// Checks a Secret: a known type with exactly its keys, none empty.
pub fn secret(secret: &Secret) -> Result<(), FieldError> {
    validate_dns_label(&secret.metadata.name)
        .map_err(|e| FieldError::new("metadata.name", format!("secret {e}")))?;
    labels("metadata.labels", &secret.metadata.labels)?;
    let spec = &secret.spec;
    let Some((_, required, optional)) = SECRET_TYPES
        .iter()
        .find(|(kind, _, _)| *kind == spec.secret_type)
    else {
        return Err(FieldError::new(
            "spec.type",
            format!(
                "spec.type: {:?} is not a secret type; use basic-auth, ssh-auth or webhook",
                spec.secret_type
            ),
        ));
    };
    for key in *required {
        if spec.string_data.get(*key).is_none_or(|v| v.is_empty()) {
            let field = format!("spec.stringData.{key}");
            return Err(FieldError::new(
                field.clone(),
                format!("{field}: a {} secret needs it", spec.secret_type),
            ));
        }
    }
    for (key, value) in &spec.string_data {
        let field = format!("spec.stringData.{}", shown(key));
        if value.is_empty() {
            return Err(FieldError::new(
                field.clone(),
                format!("{field}: empty; give it a value or leave the key out"),
            ));
        }
        if !required.contains(&key.as_str()) && !optional.contains(&key.as_str()) {
            let mut known: Vec<&str> = required.to_vec();
            known.extend_from_slice(optional);
            return Err(FieldError::new(
                field.clone(),
                format!(
                    "{field}: not a key of a {} secret; use {}",
                    spec.secret_type,
                    known.join(", ")
                ),
            ));
        }
    }
    if spec.secret_type == "webhook" && spec.string_data.is_empty() {
        return Err(FieldError::new(
            "spec.stringData",
            "spec.stringData: a webhook secret needs github (the webhook secret) or gitlab (the secret token)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use flotilla_api::{ObjectMeta, RegistrationTokenSpec};

    use super::*;

    fn bad_labels() -> BTreeMap<String, String> {
        BTreeMap::from([("bad key".to_string(), "v".to_string())])
    }

    #[test]
    fn the_label_rule_names_the_field_it_was_given_in_every_document() {
        let error = registration(&RegisterRequest {
            token: "t.s".into(),
            name: "store-1".into(),
            client_id: "c".into(),
            labels: bad_labels(),
            facts: ClusterFacts::default(),
        })
        .unwrap_err();
        assert_eq!(error.field, "labels");
        assert!(error.message.starts_with("labels bad key=v"), "{error}");
        let token = RegistrationToken {
            api_version: flotilla_api::API_VERSION.into(),
            kind: "RegistrationToken".into(),
            metadata: ObjectMeta {
                name: "t".into(),
                ..ObjectMeta::default()
            },
            spec: RegistrationTokenSpec {
                labels: bad_labels(),
                ..RegistrationTokenSpec::default()
            },
            status: None,
        };
        let error = registration_token(&token, 0).unwrap_err();
        assert_eq!(error.field, "spec.labels");
        assert!(
            error.message.starts_with("spec.labels bad key=v"),
            "{error}"
        );
    }

    #[test]
    fn a_token_ttl_past_a_century_is_refused_and_a_day_expires_a_day_later() {
        let mut token = RegistrationToken {
            api_version: flotilla_api::API_VERSION.into(),
            kind: "RegistrationToken".into(),
            metadata: ObjectMeta {
                name: "t".into(),
                ..ObjectMeta::default()
            },
            spec: RegistrationTokenSpec {
                ttl: Some("1d".into()),
                ..RegistrationTokenSpec::default()
            },
            status: None,
        };
        assert_eq!(registration_token(&token, 100), Ok(Some(100 + 86_400)));
        token.spec.ttl = Some("101y".into());
        assert_eq!(
            registration_token(&token, 100).unwrap_err().field,
            "spec.ttl"
        );
    }

    #[test]
    fn drift_ignore_paths_are_rfc_6901_pointers_to_a_field() {
        assert_eq!(field_pointer("/spec/replicas"), Ok(()));
        assert_eq!(field_pointer("/metadata/annotations/a~1b"), Ok(()));
        for bad in ["", "spec/replicas", "/a~2b"] {
            assert!(field_pointer(bad).is_err(), "{bad:?} accepted");
        }
        let policy = DriftPolicy {
            ignore: vec![flotilla_api::DriftIgnore {
                paths: vec!["/spec/replicas".into(), "/x~9".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        let error = drift(&policy).unwrap_err();
        assert_eq!(error.field, "spec.drift.ignore[0].paths[1]");
    }

    fn mk_bundle(spec: flotilla_api::BundleSpec) -> Bundle {
        Bundle {
            api_version: flotilla_api::API_VERSION.into(),
            kind: "Bundle".into(),
            metadata: ObjectMeta {
                name: "web".into(),
                ..ObjectMeta::default()
            },
            spec,
            status: None,
        }
    }

    #[test]
    fn a_bundle_write_compiles_its_rollout_and_refuses_a_bad_one_at_its_field() {
        let rollout: flotilla_api::RolloutStrategy = serde_json::from_value(serde_json::json!({
            "waves": [{"name": "canary", "clusters": 1, "mandatory": true}],
        }))
        .unwrap();
        let valid = bundle(&mk_bundle(flotilla_api::BundleSpec {
            rollout: Some(rollout.clone()),
            ..Default::default()
        }))
        .unwrap();
        let compiled = valid.rollout.expect("a compiled strategy");
        assert_eq!(compiled, strategy::compile("web", &rollout).unwrap());
        assert_eq!(compiled.waves.len(), 2, "canary, then the implicit wave");
        let none = bundle(&mk_bundle(flotilla_api::BundleSpec::default())).unwrap();
        assert!(none.rollout.is_none());

        let mut bad = rollout;
        bad.waves[0].clusters = Some(flotilla_api::IntOrPercent::Percent("150%".into()));
        let error = bundle(&mk_bundle(flotilla_api::BundleSpec {
            rollout: Some(bad),
            ..Default::default()
        }))
        .unwrap_err();
        assert_eq!(error.field, "spec.rollout.waves[0].clusters");
    }

    #[test]
    fn revision_history_limit_keeps_1_to_100_revisions() {
        for limit in [None, Some(1), Some(10), Some(MAX_REVISION_HISTORY_LIMIT)] {
            let spec = flotilla_api::BundleSpec {
                revision_history_limit: limit,
                ..Default::default()
            };
            assert!(bundle(&mk_bundle(spec)).is_ok(), "{limit:?} refused");
        }
        for limit in [0, MAX_REVISION_HISTORY_LIMIT + 1] {
            let spec = flotilla_api::BundleSpec {
                revision_history_limit: Some(limit),
                ..Default::default()
            };
            let error = bundle(&mk_bundle(spec)).unwrap_err();
            assert_eq!(error.field, "spec.revisionHistoryLimit");
            assert!(error.message.contains("keep 1 to 100 revisions"), "{error}");
        }
    }

    #[test]
    fn git_refs_that_read_as_options_are_refused() {
        assert!(git_ref("spec.branch", "main").is_ok());
        for bad in ["-upload-pack=x", "a..b", "a b", "x.lock", ""] {
            assert!(git_ref("spec.branch", bad).is_err(), "{bad:?} accepted");
        }
    }
}
