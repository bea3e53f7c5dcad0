//! What a rendering may reach: only the repository's own files, and the network only for hosts
//! the operator allowed.
//!
//! Kustomize's default load restrictor (`LoadRestrictionsRootOnly`) keeps *files* inside each
//! kustomization's folder, but a *folder* base may be anywhere (`resources: [../../../x]` is how
//! overlays reach their base), and a remote resource or base (`https://…`, `github.com/org/repo`,
//! `git::…`) makes the engine fetch it. Helm fetches charts from chart repositories, registries
//! and the dependency repositories a Chart.yaml lists. So before an engine runs, the
//! kustomization files it will read (following local bases) and the chart it will render are
//! checked here: every local path must stay inside the repository (symbolic links resolved), and
//! every remote reference must name an allowed host ([`Tools::with_allowed_hosts`]). Static
//! checks rather than an OS sandbox: they work everywhere the engines do, and the error names
//! the file, the field and the path.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use crate::RenderError;
use crate::engines::kustomization_file;
use crate::tools::Tools;

/// Kustomization fields whose entries are paths to files or folders (or remote targets).
const LIST_FIELDS: [&str; 10] = [
    "resources",
    "bases",
    "components",
    "crds",
    "configurations",
    "generators",
    "transformers",
    "validators",
    "patchesStrategicMerge",
    "openapi",
];

/// Fields whose entries may be kustomization folders, which are checked in turn.
const FOLDER_FIELDS: [&str; 6] = [
    "resources",
    "bases",
    "components",
    "generators",
    "transformers",
    "validators",
];

/// Most kustomization folders one check follows: a bound on a repository built to make the
/// check itself expensive (real overlay trees have tens).
const MAX_KUSTOMIZATIONS: usize = 1000;

/// Checks the kustomization in `dir` and every local kustomization it uses, recursively.
/// `root` is the repository root; errors name the kustomization file relative to it.
pub(crate) fn check_kustomization(
    root: &Path,
    dir: &Path,
    tools: &Tools,
) -> Result<(), RenderError> {
    let root = canonical_root(root)?;
    let Ok(start) = dir.canonicalize() else {
        return Ok(());
    };
    let mut seen = BTreeSet::new();
    let mut stack = vec![start];
    while let Some(dir) = stack.pop() {
        if !seen.insert(dir.clone()) {
            continue;
        }
        if seen.len() > MAX_KUSTOMIZATIONS {
            return Err(RenderError::plain(format!(
                "the kustomization uses more than {MAX_KUSTOMIZATIONS} kustomization folders"
            )));
        }
        let Some(file) = kustomization_file(&dir) else {
            continue;
        };
        let shown = shown(&root, &file);
        let Ok(text) = std::fs::read_to_string(&file) else {
            // Not readable as text: kustomize reports it.
            continue;
        };
        let Ok(Value::Object(kustomization)) = serde_saphyr::from_str::<Value>(&text) else {
            // Not valid YAML: kustomize's own message is the better one.
            continue;
        };
        for reference in references(&kustomization) {
            match check_reference(&root, &dir, &reference.path, tools) {
                Ok(Some(folder)) if reference.may_be_folder => stack.push(folder),
                Ok(_) => {}
                Err(problem) => {
                    return Err(RenderError::in_file(
                        &shown,
                        format!("{} {:?} {problem}", reference.field, reference.path),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// One path-like entry of a kustomization.
struct Reference {
    /// Where it is, e.g. `resources[2]` or `patches[0].path`.
    field: String,
    path: String,
    may_be_folder: bool,
}

fn references(kustomization: &serde_json::Map<String, Value>) -> Vec<Reference> {
    let mut out = Vec::new();
    let mut push = |field: String, path: &str, may_be_folder: bool| {
        // Inline patches and generator configs are YAML text, not paths.
        if !path.contains('\n') && !path.trim().is_empty() {
            out.push(Reference {
                field,
                path: path.trim().to_string(),
                may_be_folder,
            });
        }
    };
    for field in LIST_FIELDS {
        let may_be_folder = FOLDER_FIELDS.contains(&field);
        match kustomization.get(field) {
            Some(Value::Array(items)) => {
                for (index, item) in items.iter().enumerate() {
                    if let Some(path) = item.as_str() {
                        push(format!("{field}[{index}]"), path, may_be_folder);
                    }
                }
            }
            Some(Value::String(path)) => push(field.to_string(), path, may_be_folder),
            Some(Value::Object(object)) => {
                // `openapi: {path: …}`
                if let Some(path) = object.get("path").and_then(Value::as_str) {
                    push(format!("{field}.path"), path, false);
                }
            }
            _ => {}
        }
    }
    for field in ["patches", "patchesJson6902", "replacements"] {
        if let Some(Value::Array(items)) = kustomization.get(field) {
            for (index, item) in items.iter().enumerate() {
                if let Some(path) = item.get("path").and_then(Value::as_str) {
                    push(format!("{field}[{index}].path"), path, false);
                }
            }
        }
    }
    for field in ["configMapGenerator", "secretGenerator"] {
        let Some(Value::Array(generators)) = kustomization.get(field) else {
            continue;
        };
        for (index, generator) in generators.iter().enumerate() {
            for key in ["files", "envs"] {
                if let Some(Value::Array(items)) = generator.get(key) {
                    for (item_index, item) in items.iter().enumerate() {
                        if let Some(entry) = item.as_str() {
                            // `files` entries may be `key=path`.
                            let path = match (key, entry.split_once('=')) {
                                ("files", Some((_, path))) => path,
                                _ => entry,
                            };
                            push(format!("{field}[{index}].{key}[{item_index}]"), path, false);
                        }
                    }
                }
            }
            if let Some(path) = generator.get("env").and_then(Value::as_str) {
                push(format!("{field}[{index}].env"), path, false);
            }
        }
    }
    out
}

/// Checks one reference made from the kustomization folder `dir`: a local path must stay in
/// `root` (returns it when it is a folder), anything else must be a remote target on an allowed
/// host. The error completes "<field> <path> …".
fn check_reference(
    root: &Path,
    dir: &Path,
    reference: &str,
    tools: &Tools,
) -> Result<Option<PathBuf>, String> {
    if let Some(target) = remote_target(reference) {
        return check_remote(&target, tools).map(|()| None);
    }
    let Some(lexical) = join_lexically(dir, reference) else {
        return Err("is an absolute path; use a path relative to the kustomization".into());
    };
    if !lexical.starts_with(root) {
        return Err(
            "leaves the repository: a kustomization may only use files and folders inside \
             the repository"
                .into(),
        );
    }
    match lexical.canonicalize() {
        Ok(real) if real.starts_with(root) => Ok(real.is_dir().then_some(real)),
        Ok(_) => Err(
            "is a symbolic link that leads outside the repository: a kustomization may only \
             use files and folders inside the repository"
                .into(),
        ),
        // Kustomize reads a missing local path that looks like a repository (`host/org/repo`,
        // `…/repo.git`, `…//sub`, `?ref=`) as a remote one; anything else it reports missing.
        Err(_) if lexical.symlink_metadata().is_ok() => Err(
            "is a symbolic link that leads outside the repository or to nothing: a \
             kustomization may only use files and folders inside the repository"
                .into(),
        ),
        Err(_) => {
            let looks_remote = host_like(reference).is_some()
                || reference.contains(".git")
                || reference.contains("//")
                || reference.contains("?ref=")
                || reference.starts_with("gh:");
            if !looks_remote {
                return Ok(None);
            }
            let host = reference
                .trim_start_matches("gh:")
                .split('/')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let host = if reference.starts_with("gh:") {
                "github.com".to_string()
            } else {
                host
            };
            check_remote(
                &RemoteTarget {
                    host: Some(host),
                    url: reference.to_string(),
                },
                tools,
            )
            .map(|()| None)
        }
    }
}

/// A reference that names something to download.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RemoteTarget {
    /// Lower-cased `host` or `host:port`; `None` for `file://` targets, which are never allowed.
    pub host: Option<String>,
    pub url: String,
}

/// The remote target `reference` names, if it is a URL or a git remote (`git::…`,
/// `git@host:…`, `ssh://…`); plain relative paths are not.
pub(crate) fn remote_target(reference: &str) -> Option<RemoteTarget> {
    let text = reference.trim();
    let text = text.strip_prefix("git::").unwrap_or(text);
    if let Some((scheme, rest)) = text.split_once("://") {
        let scheme = scheme.to_ascii_lowercase();
        if scheme == "file" {
            return Some(RemoteTarget {
                host: None,
                url: reference.to_string(),
            });
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        return Some(RemoteTarget {
            host: Some(host.to_ascii_lowercase()),
            url: reference.to_string(),
        });
    }
    let go_getter = host_like(text).is_some()
        && (text.starts_with("github.com/")
            || text.starts_with("gitlab.com/")
            || text.starts_with("bitbucket.org/")
            || text.contains("//")
            || text.contains("?ref="));
    if text.starts_with("git@") || go_getter {
        let after_user = text.split_once('@').map_or(text, |(_, rest)| rest);
        let host = after_user
            .split([':', '/'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        return Some(RemoteTarget {
            host: Some(host),
            url: reference.to_string(),
        });
    }
    None
}

/// The first segment of a relative path when it looks like a host name (`example.com/org/repo`).
fn host_like(reference: &str) -> Option<String> {
    let first = reference.split('/').next()?;
    (first.contains('.')
        && !first.starts_with('.')
        && reference.contains('/')
        && first
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':')))
    .then(|| first.to_ascii_lowercase())
}

/// Whether the tools may fetch `target`; the error completes "<what> <url> …".
pub(crate) fn check_remote(target: &RemoteTarget, tools: &Tools) -> Result<(), String> {
    match &target.host {
        None => Err("reads files outside the repository (file://), which renders never do".into()),
        Some(host) if tools.allows_host(host) => Ok(()),
        Some(host) => Err(format!(
            "is on {host}, and renders do not use the network unless the host is allowed: \
             vendor it into the repository, or allow the host (server: --render-allow-hosts \
             {host})"
        )),
    }
}

/// `relative` joined to `base` without touching the disk (`..` pops a component); `None` for
/// absolute paths.
fn join_lexically(base: &Path, relative: &str) -> Option<PathBuf> {
    let mut out = base.to_path_buf();
    for component in Path::new(relative).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn canonical_root(root: &Path) -> Result<PathBuf, RenderError> {
    root.canonicalize().map_err(|error| {
        RenderError::plain(format!(
            "cannot read the repository at {}: {error}",
            root.display()
        ))
    })
}

/// `path` relative to `root`, with `/` separators.
fn shown(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .map(|relative| crate::discover::normalize_folder(&relative.to_string_lossy()))
        .unwrap_or_else(|_| path.display().to_string())
}

/// Checks what `helm template` would download for `chart`: the chart itself when it comes from
/// a repository or registry, and for a local chart whose dependencies are updated, each
/// dependency's repository (`file://` ones must stay inside `root`). `shown` names the file.
pub(crate) fn check_chart(
    root: &Path,
    chart: &crate::engines::ChartRef,
    dependency_update: bool,
    tools: &Tools,
    shown: &str,
) -> Result<(), RenderError> {
    use crate::engines::ChartRef;
    let remote = |what: &str, url: &str| {
        let target = remote_target(url).unwrap_or(RemoteTarget {
            host: Some(String::new()),
            url: url.to_string(),
        });
        check_remote(&target, tools)
            .map_err(|problem| RenderError::in_file(shown, format!("{what} {url:?} {problem}")))
    };
    match chart {
        ChartRef::Repo { repo, .. } => remote("helm.repo", repo),
        ChartRef::Url(url) => remote("helm.chart", url),
        ChartRef::Local {
            path,
            shown: chart_shown,
        } => {
            if !dependency_update || !path.is_dir() {
                return Ok(());
            }
            let root = canonical_root(root)?;
            let Ok(text) = std::fs::read_to_string(path.join("Chart.yaml")) else {
                return Ok(());
            };
            let Ok(chart_yaml) = serde_saphyr::from_str::<Value>(&text) else {
                return Ok(());
            };
            let Some(Value::Array(dependencies)) = chart_yaml.get("dependencies") else {
                return Ok(());
            };
            let chart_file = format!("{chart_shown}/Chart.yaml");
            for (index, dependency) in dependencies.iter().enumerate() {
                let repository = dependency
                    .get("repository")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .trim();
                let what = format!("dependencies[{index}].repository");
                if repository.is_empty() {
                    continue;
                }
                if let Some(local) = repository.strip_prefix("file://") {
                    let inside = path
                        .canonicalize()
                        .ok()
                        .and_then(|dir| join_lexically(&dir, local))
                        .filter(|lexical| lexical.starts_with(&root))
                        .is_some_and(|lexical| {
                            lexical
                                .canonicalize()
                                .is_ok_and(|real| real.starts_with(&root))
                        });
                    if !inside {
                        return Err(RenderError::in_file(
                            chart_file,
                            format!(
                                "{what} {repository:?} is not a chart folder inside the repository"
                            ),
                        ));
                    }
                    continue;
                }
                if repository.starts_with('@') || repository.starts_with("alias:") {
                    return Err(RenderError::in_file(
                        chart_file,
                        format!(
                            "{what} {repository:?} names a repository by alias, and renders \
                             know no repositories: use its URL"
                        ),
                    ));
                }
                let target = remote_target(repository).unwrap_or(RemoteTarget {
                    host: Some(String::new()),
                    url: repository.to_string(),
                });
                check_remote(&target, tools).map_err(|problem| {
                    RenderError::in_file(
                        &chart_file,
                        format!(
                            "{what} {repository:?} {problem} (or vendor the dependency into \
                             charts/ and set helm.disableDependencyUpdate)"
                        ),
                    )
                })?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(reference: &str) -> Option<Option<String>> {
        remote_target(reference).map(|target| target.host)
    }

    #[test]
    fn remote_targets_are_recognised_with_their_host() {
        let some = |h: &str| Some(Some(h.to_string()));
        assert_eq!(
            host("https://Example.com:8443/x.yaml"),
            some("example.com:8443")
        );
        assert_eq!(
            host("http://user:pw@127.0.0.1:9/r.yaml"),
            some("127.0.0.1:9")
        );
        assert_eq!(
            host("git::https://git.example/org/repo"),
            some("git.example")
        );
        assert_eq!(host("git@github.com:org/repo.git"), some("github.com"));
        assert_eq!(host("github.com/org/repo//base?ref=v1"), some("github.com"));
        assert_eq!(
            host("oci://registry.example/charts/web"),
            some("registry.example")
        );
        assert_eq!(host("file:///etc/passwd"), Some(None));
        assert_eq!(host("../base"), None);
        assert_eq!(host("deploy.yaml"), None);
        assert_eq!(host("../..//tmp/x"), None);
        assert_eq!(
            host_like("example.com/org/repo"),
            Some("example.com".into())
        );
        assert_eq!(host_like("deploy.yaml"), None);
        assert_eq!(host_like("../x.yaml/y"), None);
    }

    #[test]
    fn remote_targets_need_an_allowed_host_and_file_urls_never_pass() {
        let target = remote_target("https://charts.example/index.yaml").unwrap();
        let error = check_remote(&target, &Tools::none()).unwrap_err();
        assert!(
            error.contains("--render-allow-hosts charts.example"),
            "{error}"
        );
        let allowed = Tools::none().with_allowed_hosts(["charts.example"]);
        assert!(check_remote(&target, &allowed).is_ok());
        let wildcard = Tools::none().with_allowed_hosts(["*.example"]);
        assert!(check_remote(&target, &wildcard).is_ok());
        let file = remote_target("file:///etc").unwrap();
        assert!(check_remote(&file, &Tools::none().with_allowed_hosts(["*"])).is_err());
    }
}
