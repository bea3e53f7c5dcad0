//! `/api/v1/gitrepos` and `/api/v1/secrets`: validation, writes, reads and deletes of git sources
//! and the credentials they use. The rendering and fetching itself is `crate::gitops`.

use std::time::Duration;

use flotilla_api::{GitRepo, GitRepoSpec, Kind, Secret, SecretSpec, SecretStatus};
use flotilla_core::{targeting::compile_targets, validate::validate_dns_label};
use flotilla_store::Op;
use serde_json::Value;

use super::admin::{Mode, check_version, exists_error, fresh_metadata, validate_labels};
use crate::{
    error::{ApiError, ApiResult},
    fleet::{Fleet, GitRepoEntry, SecretEntry},
    records::{self, GitRepoRecord, SecretRecord},
    state::{SharedState, now_seconds},
};

/// Shortest and longest accepted poll intervals.
const MIN_POLL: Duration = Duration::from_secs(1);
const MAX_POLL: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_POLL: Duration = Duration::from_secs(60);

/// The poll interval a spec asks for (validated on write).
pub fn poll_interval(spec: &GitRepoSpec) -> Duration {
    spec.poll_interval
        .as_deref()
        .and_then(|text| humantime::parse_duration(text).ok())
        .unwrap_or(DEFAULT_POLL)
        .clamp(MIN_POLL, MAX_POLL)
}

/// Rejects refs that git would read as options or that are not valid ref names.
fn validate_ref(field: &str, value: &str) -> ApiResult<()> {
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
        return Err(ApiError::Unprocessable(format!(
            "{field}: {value:?} is not a valid git branch, tag or commit name"
        )));
    }
    Ok(())
}

/// Accepts the URL forms git fetches from; rejects anything git could read as an option.
fn validate_repo_url(url: &str) -> ApiResult<()> {
    let scp_like = !url.contains("://")
        && url.split_once(':').is_some_and(|(host, path)| {
            !host.is_empty() && !host.contains('/') && !path.is_empty()
        });
    let known_scheme = ["https://", "http://", "git://", "ssh://", "file://"]
        .iter()
        .any(|scheme| url.starts_with(scheme) && url.len() > scheme.len());
    if url.starts_with('-') || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::Unprocessable(format!(
            "spec.repo: {url:?} is not a repository URL"
        )));
    }
    if url.contains("::") {
        return Err(ApiError::Unprocessable(format!(
            "spec.repo: {url:?} names a git remote helper; use https://, http://, git://, ssh://, file:// or user@host:path"
        )));
    }
    if let Some((_, rest)) = url.split_once("://")
        && let Some(authority) = rest.split('/').next()
        && authority
            .rsplit_once('@')
            .is_some_and(|(userinfo, _)| userinfo.contains(':'))
    {
        return Err(ApiError::Unprocessable(
            "spec.repo: the URL carries a password; put credentials in a Secret (type basic-auth) and name it in spec.clientSecretName".into(),
        ));
    }
    if !(known_scheme || scp_like) {
        return Err(ApiError::Unprocessable(format!(
            "spec.repo: {url:?} is not a repository URL; use https://, http://, git://, ssh://, file:// or user@host:path"
        )));
    }
    Ok(())
}

/// Folders are relative to the repository root and stay inside it.
fn validate_path(index: usize, path: &str) -> ApiResult<()> {
    let escapes = path.starts_with('/')
        || path.split('/').any(|segment| segment == "..")
        || path.contains('\\')
        || path.chars().any(char::is_control);
    if escapes {
        return Err(ApiError::Unprocessable(format!(
            "spec.paths[{index}]: {path:?} must be a folder inside the repository, like apps/web"
        )));
    }
    Ok(())
}

pub fn validate_gitrepo(repo: &GitRepo) -> ApiResult<()> {
    validate_dns_label(&repo.metadata.name)
        .map_err(|e| ApiError::Unprocessable(format!("git repo {e}")))?;
    validate_labels(&repo.metadata.labels)?;
    let spec = &repo.spec;
    validate_repo_url(&spec.repo)?;
    if spec.branch.is_some() && spec.revision.is_some() {
        return Err(ApiError::Unprocessable(
            "spec.branch and spec.revision are both set; set one (a branch to follow, or a tag or commit to pin)".into(),
        ));
    }
    if let Some(branch) = &spec.branch {
        validate_ref("spec.branch", branch)?;
    }
    if let Some(revision) = &spec.revision {
        validate_ref("spec.revision", revision)?;
    }
    for (index, path) in spec.paths.iter().enumerate() {
        validate_path(index, path)?;
    }
    if let Some(text) = &spec.poll_interval {
        let interval = humantime::parse_duration(text).map_err(|e| {
            ApiError::Unprocessable(format!(
                "spec.pollInterval: {text:?} is not a duration ({e}); write it like 60s or 5m"
            ))
        })?;
        if interval < MIN_POLL || interval > MAX_POLL {
            return Err(ApiError::Unprocessable(format!(
                "spec.pollInterval: {text} is out of range; use 1s to 24h (webhooks trigger fetches at once)"
            )));
        }
    }
    if let Some(secret) = &spec.client_secret_name {
        validate_dns_label(secret)
            .map_err(|e| ApiError::Unprocessable(format!("spec.clientSecretName: {e}")))?;
    }
    compile_targets(&spec.targets).map_err(ApiError::Unprocessable)?;
    if spec.targets.iter().any(|t| t.resources.is_some()) {
        return Err(ApiError::Unprocessable(
            "spec.targets[].resources: a GitRepo's manifests come from the repository; remove resources from its targets".into(),
        ));
    }
    Ok(())
}

pub async fn write_gitrepo(
    state: &SharedState,
    repo: GitRepo,
    mode: Mode,
) -> ApiResult<(bool, Value)> {
    validate_gitrepo(&repo)?;
    let name = repo.metadata.name.clone();
    let now = now_seconds();
    let old_meta = {
        let fleet = state.fleet.read();
        match fleet.gitrepos.get(&name) {
            Some(old) => {
                if mode == Mode::Create {
                    return Err(exists_error(Kind::GitRepo, &name));
                }
                check_version(
                    &repo.metadata.resource_version,
                    old.metadata.resource_version.as_deref(),
                    "the git repo",
                )?;
                Some((old.metadata.clone(), old.spec != repo.spec))
            }
            None => None,
        }
    };
    let changed = old_meta.as_ref().is_none_or(|(_, changed)| *changed);
    let metadata = fresh_metadata(
        &repo.metadata,
        old_meta.as_ref().map(|(m, _)| m),
        changed,
        now,
    );
    let record = GitRepoRecord {
        metadata: metadata.clone(),
        spec: repo.spec.clone(),
    };
    let revision =
        super::admin::commit(state, vec![records::put(records::GITREPO, &name, &record)]).await?;
    let rendered = {
        let mut fleet = state.fleet.write();
        let mut metadata = metadata;
        metadata.resource_version = Some(revision.to_string());
        let status = fleet
            .gitrepos
            .remove(&name)
            .map(|old| old.status)
            .unwrap_or_default();
        fleet.gitrepos.insert(
            name.clone(),
            GitRepoEntry {
                metadata,
                spec: repo.spec,
                status,
            },
        );
        render_gitrepo(&fleet, &name)
    };
    if changed {
        state.gitops.fetch_now(&name);
    }
    Ok((old_meta.is_none(), rendered))
}

pub fn render_gitrepo(fleet: &Fleet, name: &str) -> Value {
    let Some(entry) = fleet.gitrepos.get(name) else {
        return Value::Null;
    };
    let document = GitRepo {
        api_version: flotilla_api::API_VERSION.into(),
        kind: Kind::GitRepo.as_str().into(),
        metadata: entry.metadata.clone(),
        spec: entry.spec.clone(),
        status: Some(entry.status.clone()),
    };
    serde_json::to_value(document).unwrap_or_default()
}

const SECRET_TYPES: &[(&str, &[&str], &[&str])] = &[
    // type, required keys, optional keys
    ("basic-auth", &["username", "password"], &[]),
    ("ssh-auth", &["ssh-privatekey", "known_hosts"], &[]),
    ("webhook", &[], &["github", "gitlab"]),
];

pub fn validate_secret(secret: &Secret) -> ApiResult<()> {
    validate_dns_label(&secret.metadata.name)
        .map_err(|e| ApiError::Unprocessable(format!("secret {e}")))?;
    validate_labels(&secret.metadata.labels)?;
    let spec = &secret.spec;
    let Some((_, required, optional)) = SECRET_TYPES
        .iter()
        .find(|(kind, _, _)| *kind == spec.secret_type)
    else {
        return Err(ApiError::Unprocessable(format!(
            "spec.type: {:?} is not a secret type; use basic-auth, ssh-auth or webhook",
            spec.secret_type
        )));
    };
    for key in *required {
        if spec.string_data.get(*key).is_none_or(|v| v.is_empty()) {
            return Err(ApiError::Unprocessable(format!(
                "spec.stringData.{key}: a {} secret needs it",
                spec.secret_type
            )));
        }
    }
    for (key, value) in &spec.string_data {
        if value.is_empty() {
            return Err(ApiError::Unprocessable(format!(
                "spec.stringData.{key}: empty; give it a value or leave the key out"
            )));
        }
        if !required.contains(&key.as_str()) && !optional.contains(&key.as_str()) {
            let mut known: Vec<&str> = required.to_vec();
            known.extend_from_slice(optional);
            return Err(ApiError::Unprocessable(format!(
                "spec.stringData.{key}: not a key of a {} secret; use {}",
                spec.secret_type,
                known.join(", ")
            )));
        }
    }
    if spec.secret_type == "webhook" && spec.string_data.is_empty() {
        return Err(ApiError::Unprocessable(
            "spec.stringData: a webhook secret needs github (the webhook secret) or gitlab (the secret token)".into(),
        ));
    }
    Ok(())
}

pub async fn write_secret(
    state: &SharedState,
    secret: Secret,
    mode: Mode,
) -> ApiResult<(bool, Value)> {
    validate_secret(&secret)?;
    let name = secret.metadata.name.clone();
    let now = now_seconds();
    let old = {
        let fleet = state.fleet.read();
        match fleet.secrets.get(&name) {
            Some(old) => {
                if mode == Mode::Create {
                    return Err(exists_error(Kind::Secret, &name));
                }
                check_version(
                    &secret.metadata.resource_version,
                    old.metadata.resource_version.as_deref(),
                    "the secret",
                )?;
                Some((old.metadata.clone(), old.spec != secret.spec))
            }
            None => None,
        }
    };
    let changed = old.as_ref().is_none_or(|(_, changed)| *changed);
    let metadata = fresh_metadata(&secret.metadata, old.as_ref().map(|(m, _)| m), changed, now);
    let record = SecretRecord {
        metadata: metadata.clone(),
        spec: secret.spec.clone(),
    };
    let revision =
        super::admin::commit(state, vec![records::put(records::SECRET, &name, &record)]).await?;
    let mut fleet = state.fleet.write();
    let mut metadata = metadata;
    metadata.resource_version = Some(revision.to_string());
    fleet.secrets.insert(
        name.clone(),
        SecretEntry {
            metadata,
            spec: secret.spec,
        },
    );
    let rendered = render_secret(&fleet, &name);
    // Repositories that fetch with this secret retry at once (it may be what they lacked).
    let users: Vec<String> = fleet
        .gitrepos
        .iter()
        .filter(|(_, repo)| repo.spec.client_secret_name.as_deref() == Some(name.as_str()))
        .map(|(repo, _)| repo.clone())
        .collect();
    drop(fleet);
    for repo in users {
        state.gitops.fetch_now(&repo);
    }
    Ok((old.is_none(), rendered))
}

/// A secret as the API shows it: its keys, never its values.
pub fn render_secret(fleet: &Fleet, name: &str) -> Value {
    let Some(entry) = fleet.secrets.get(name) else {
        return Value::Null;
    };
    let document = Secret {
        api_version: flotilla_api::API_VERSION.into(),
        kind: Kind::Secret.as_str().into(),
        metadata: entry.metadata.clone(),
        spec: SecretSpec {
            secret_type: entry.spec.secret_type.clone(),
            string_data: Default::default(),
        },
        status: Some(SecretStatus {
            keys: entry.spec.string_data.keys().cloned().collect(),
        }),
    };
    serde_json::to_value(document).unwrap_or_default()
}

/// The store ops that delete a GitRepo with the bundles it rendered.
pub fn delete_gitrepo_ops(fleet: &Fleet, name: &str) -> Vec<Op> {
    let mut ops = vec![
        records::delete(records::GITREPO, name),
        records::delete(records::GITREPO_STATUS, name),
    ];
    for bundle in owned_bundles(fleet, name) {
        ops.push(records::delete(records::BUNDLE, &bundle));
    }
    ops
}

/// Names of the bundles a GitRepo owns.
pub fn owned_bundles(fleet: &Fleet, repo: &str) -> Vec<String> {
    fleet.bundles_owned_by(repo)
}

pub fn remove_gitrepo(fleet: &mut Fleet, name: &str) {
    for bundle in owned_bundles(fleet, name) {
        fleet.remove_bundle(&bundle);
    }
    fleet.gitrepos.remove(name);
    super::admin::release_contents(fleet);
}
