//! `POST /api/v1/webhooks/git`: GitHub and GitLab push events trigger an immediate fetch of the
//! GitRepos that follow the pushed repository and ref.
//!
//! Git hosts cannot send the admin token, so the request is authenticated by the host's own
//! scheme against the `git-webhook` Secret (type `webhook`): GitHub's `X-Hub-Signature-256`
//! (HMAC-SHA256 of the body with the `github` key), GitLab's `X-Gitlab-Token` (equal to the
//! `gitlab` key). Without that Secret every webhook is refused.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::{
    api::body::RawBody,
    error::{ApiError, ApiResult},
    state::SharedState,
};

/// Name of the Secret holding the webhook keys.
pub const WEBHOOK_SECRET: &str = "git-webhook";

/// A push, reduced to what matching needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Push {
    /// Every URL the payload gives for the repository, normalized.
    pub urls: Vec<String>,
    /// `refs/heads/…` or `refs/tags/…`.
    pub git_ref: String,
}

pub async fn receive(
    State(state): State<SharedState>,
    headers: HeaderMap,
    // A body over the limit is a JSON 413, like every other route's.
    body: RawBody,
) -> ApiResult<Response> {
    let body = body.bytes;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (github, gitlab) = {
        let fleet = state.fleet.read();
        let secret = fleet
            .secrets()
            .get(WEBHOOK_SECRET)
            .filter(|s| s.spec.secret_type == "webhook");
        let Some(secret) = secret else {
            return Err(ApiError::Forbidden(format!(
                "webhooks are not configured: create a Secret named {WEBHOOK_SECRET} of type webhook with a github and/or gitlab key"
            )));
        };
        (
            // An empty key would accept requests anyone can forge.
            secret
                .spec
                .string_data
                .get("github")
                .filter(|k| !k.is_empty())
                .cloned(),
            secret
                .spec
                .string_data
                .get("gitlab")
                .filter(|k| !k.is_empty())
                .cloned(),
        )
    };
    let host = if let Some(event) = header("x-github-event") {
        let key = github.ok_or_else(|| {
            ApiError::Forbidden(format!(
                "GitHub webhooks are not configured: add a github key to the Secret {WEBHOOK_SECRET}"
            ))
        })?;
        let signature = header("x-hub-signature-256").ok_or_else(|| {
            ApiError::Unauthorized(
                "missing X-Hub-Signature-256: set the webhook's secret in GitHub".into(),
            )
        })?;
        if !github_signature_matches(key.as_bytes(), &body, signature) {
            return Err(ApiError::Unauthorized(
                "X-Hub-Signature-256 does not match the body: the webhook's secret differs from the github key".into(),
            ));
        }
        if event == "ping" {
            return Ok(
                (StatusCode::OK, Json(serde_json::json!({"message": "pong"}))).into_response(),
            );
        }
        if event != "push" {
            return Ok(ignored(&format!("GitHub event {event:?} is not a push")));
        }
        Host::GitHub
    } else if let Some(event) = header("x-gitlab-event") {
        let key = gitlab.ok_or_else(|| {
            ApiError::Forbidden(format!(
                "GitLab webhooks are not configured: add a gitlab key to the Secret {WEBHOOK_SECRET}"
            ))
        })?;
        let token = header("x-gitlab-token").unwrap_or("");
        if !bool::from(token.as_bytes().ct_eq(key.as_bytes())) {
            return Err(ApiError::Unauthorized(
                "X-Gitlab-Token does not match the gitlab key of the webhook secret".into(),
            ));
        }
        if event != "Push Hook" && event != "Tag Push Hook" {
            return Ok(ignored(&format!("GitLab event {event:?} is not a push")));
        }
        Host::GitLab
    } else {
        return Err(ApiError::BadRequest(
            "not a GitHub or GitLab webhook: expected an X-GitHub-Event or X-Gitlab-Event header"
                .into(),
        ));
    };
    let payload: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("webhook body is not JSON: {e}")))?;
    let push = parse_push(host, &payload).ok_or_else(|| {
        ApiError::BadRequest(
            "push payload names no repository URL or ref (repository.clone_url / project.git_http_url, ref)".into(),
        )
    })?;
    let triggered: Vec<String> = {
        let fleet = state.fleet.read();
        fleet
            .gitrepos()
            .iter()
            .filter(|(_, repo)| !repo.spec.paused && follows(&repo.spec, &push))
            .map(|(name, _)| name.clone())
            .collect()
    };
    for name in &triggered {
        state.gitops.fetch_now(name);
    }
    tracing::info!(git_ref = %push.git_ref, repos = triggered.len(), "webhook push");
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "triggered": triggered })),
    )
        .into_response())
}

fn ignored(why: &str) -> Response {
    (
        StatusCode::OK,
        Json(serde_json::json!({ "triggered": [], "message": why })),
    )
        .into_response()
}

#[derive(Debug, Clone, Copy)]
pub enum Host {
    GitHub,
    GitLab,
}

/// GitHub signs the raw body: `sha256=` + hex HMAC-SHA256 with the webhook secret.
pub fn github_signature_matches(key: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_signature) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(signature) = hex::decode(hex_signature.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

pub fn parse_push(host: Host, payload: &Value) -> Option<Push> {
    let text = |pointer: &str| payload.pointer(pointer).and_then(Value::as_str);
    let candidates: &[&str] = match host {
        Host::GitHub => &[
            "/repository/clone_url",
            "/repository/ssh_url",
            "/repository/git_url",
            "/repository/html_url",
            "/repository/url",
        ],
        Host::GitLab => &[
            "/project/git_http_url",
            "/project/git_ssh_url",
            "/project/web_url",
            "/repository/git_http_url",
            "/repository/git_ssh_url",
            "/repository/homepage",
        ],
    };
    let mut urls: Vec<String> = candidates
        .iter()
        .filter_map(|pointer| text(pointer))
        .map(normalize_url)
        .collect();
    urls.sort();
    urls.dedup();
    let git_ref = text("/ref")?.to_string();
    (!urls.is_empty()).then_some(Push { urls, git_ref })
}

/// Whether a GitRepo follows the pushed repository and ref.
fn follows(spec: &flotilla_api::GitRepoSpec, push: &Push) -> bool {
    if !push.urls.contains(&normalize_url(&spec.repo)) {
        return false;
    }
    match (&spec.revision, &spec.branch) {
        // Pinned to a tag or commit: a push of that tag (or of a branch of that name) counts.
        (Some(revision), _) => {
            push.git_ref == format!("refs/tags/{revision}")
                || push.git_ref == format!("refs/heads/{revision}")
        }
        (None, branch) => {
            push.git_ref == format!("refs/heads/{}", branch.as_deref().unwrap_or("main"))
        }
    }
}

/// One spelling per repository: no scheme, user or port, lower-case, no `.git` or trailing `/`;
/// `git@host:owner/repo` and `https://host/owner/repo.git` become `host/owner/repo`.
pub fn normalize_url(url: &str) -> String {
    let url = url.trim();
    let (rest, scp_like) = match url.split_once("://") {
        Some((_, rest)) => (rest, false),
        None => (url, true),
    };
    let (authority, path) = if scp_like {
        match rest.split_once(':') {
            Some((authority, path)) => (authority, path),
            None => (rest, ""),
        }
    } else {
        match rest.split_once('/') {
            Some((authority, path)) => (authority, path),
            None => (rest, ""),
        }
    };
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    format!("{host}/{path}").to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_repository_normalizes_to_one() {
        let expected = "github.com/acme/fleet";
        for url in [
            "https://github.com/acme/fleet.git",
            "https://github.com/acme/fleet",
            "https://token@github.com/acme/fleet/",
            "git@github.com:acme/fleet.git",
            "ssh://git@github.com:22/acme/fleet.git",
            "git://github.com/Acme/Fleet.git",
        ] {
            assert_eq!(normalize_url(url), expected, "{url}");
        }
        assert_ne!(normalize_url("https://github.com/acme/fleet-2"), expected);
    }

    #[test]
    fn github_signature_is_checked_against_the_body() {
        let key = b"It's a Secret to Everybody";
        let body = b"Hello, World!";
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(body);
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert!(github_signature_matches(key, body, &good));
        assert!(!github_signature_matches(key, b"Hello, World?", &good));
        assert!(!github_signature_matches(b"other", body, &good));
        assert!(!github_signature_matches(key, body, "sha1=abc"));
    }

    #[test]
    fn push_payloads_of_both_hosts_name_the_repository_and_ref() {
        let github = serde_json::json!({
            "ref": "refs/heads/main",
            "repository": {
                "clone_url": "https://github.com/acme/fleet.git",
                "ssh_url": "git@github.com:acme/fleet.git"
            }
        });
        let push = parse_push(Host::GitHub, &github).unwrap();
        assert_eq!(push.urls, vec!["github.com/acme/fleet"]);
        assert_eq!(push.git_ref, "refs/heads/main");
        let gitlab = serde_json::json!({
            "ref": "refs/tags/v1",
            "project": {"git_http_url": "https://gitlab.example/acme/fleet.git"}
        });
        let push = parse_push(Host::GitLab, &gitlab).unwrap();
        assert_eq!(push.urls, vec!["gitlab.example/acme/fleet"]);
        assert!(parse_push(Host::GitHub, &serde_json::json!({"ref": "x"})).is_none());
    }

    #[test]
    fn a_push_triggers_only_repos_following_that_branch_or_tag() {
        let push = Push {
            urls: vec!["git.example/acme/fleet".into()],
            git_ref: "refs/heads/main".into(),
        };
        let spec = |branch: Option<&str>, revision: Option<&str>| flotilla_api::GitRepoSpec {
            repo: "https://git.example/acme/fleet.git".into(),
            branch: branch.map(Into::into),
            revision: revision.map(Into::into),
            ..Default::default()
        };
        assert!(follows(&spec(None, None), &push));
        assert!(follows(&spec(Some("main"), None), &push));
        assert!(!follows(&spec(Some("dev"), None), &push));
        assert!(!follows(&spec(None, Some("v1")), &push));
        let other = flotilla_api::GitRepoSpec {
            repo: "https://git.example/acme/other.git".into(),
            ..Default::default()
        };
        assert!(!follows(&other, &push));
    }
}
