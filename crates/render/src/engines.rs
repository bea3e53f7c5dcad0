//! Running the real engines: `helm template` and kustomize builds.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Value};

use crate::RenderError;
use crate::tools::{RunError, Tools, failure_text, isolate, run};

/// Where a Helm chart comes from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ChartRef {
    /// A chart folder or packaged chart in the checkout (absolute path, and as shown to users).
    Local { path: PathBuf, shown: String },
    /// A chart by name in a chart repository.
    Repo { repo: String, chart: String },
    /// An `oci://` reference or an `http(s)://` URL of a packaged chart.
    Url(String),
}

impl ChartRef {
    fn describe(&self) -> String {
        match self {
            ChartRef::Local { shown, .. } => shown.clone(),
            ChartRef::Repo { repo, chart } => format!("{chart} from {repo}"),
            ChartRef::Url(url) => url.clone(),
        }
    }
}

/// One `helm template` run.
pub(crate) struct HelmJob<'a> {
    /// The repository root (absolute): a chart whose dependencies are updated is rendered from
    /// a copy of it, so `file://` dependencies resolve as in the repository and nowhere else.
    pub root: &'a Path,
    pub chart: &'a ChartRef,
    pub release: &'a str,
    pub namespace: &'a str,
    pub version: Option<&'a str>,
    pub values: &'a Map<String, Value>,
    pub skip_schema_validation: bool,
    /// Fetch the dependencies a local chart declares (Fleet does unless disableDependencyUpdate).
    pub dependency_update: bool,
}

/// Renders a chart with `helm template`, in a temporary Helm home so no user configuration,
/// repository list or cache changes the result. CRDs are included (Fleet installs them), tests
/// are not. `shown` names the file errors point at.
pub(crate) fn helm_template(
    tools: &Tools,
    job: &HelmJob<'_>,
    shown: &str,
) -> Result<String, RenderError> {
    let Some(helm) = tools.helm() else {
        return Err(RenderError::in_file(
            shown,
            "rendering a Helm chart needs helm v3 or later, and none was found: install helm, or \
             set FLOTILLA_HELM to its path",
        ));
    };
    let temp = tempdir(shown)?;
    let home = temp.path();
    let values_file = home.join("values.json");
    let values_text = serde_json::to_string(job.values).unwrap_or_else(|_| "{}".into());
    std::fs::write(&values_file, values_text).map_err(|e| io(shown, "write the values file", e))?;

    let mut command = Command::new(helm);
    command.arg("template").arg(job.release);
    let mut dependency_update = false;
    match job.chart {
        ChartRef::Local { path, .. } => {
            if job.dependency_update && path.is_dir() && declares_dependencies(path) {
                // `--dependency-update` writes into the chart's charts/: work on a copy of the
                // repository (the chart at the same place in it) so the checkout is never
                // modified and relative `file://` dependencies resolve inside the copy.
                let relative = path.strip_prefix(job.root).map_err(|_| {
                    RenderError::in_file(shown, "the chart is not inside the repository")
                })?;
                let copy = home.join("repo");
                copy_tree(job.root, &copy).map_err(|e| io(shown, "copy the repository", e))?;
                command.arg(copy.join(relative));
                dependency_update = true;
            } else {
                command.arg(path);
            }
        }
        ChartRef::Repo { repo, chart } => {
            command.arg(chart).arg("--repo").arg(repo);
        }
        ChartRef::Url(url) => {
            command.arg(url);
        }
    }
    if let Some(version) = job.version {
        command.arg("--version").arg(version);
    }
    command
        .arg("--namespace")
        .arg(job.namespace)
        .arg("--values")
        .arg(&values_file)
        .arg("--include-crds")
        .arg("--skip-tests");
    if dependency_update {
        command.arg("--dependency-update");
    }
    if job.skip_schema_validation {
        command.arg("--skip-schema-validation");
    }
    let env: Vec<(&str, OsString)> = vec![
        ("HOME", home.into()),
        ("HELM_CACHE_HOME", home.join("cache").into()),
        ("HELM_CONFIG_HOME", home.join("config").into()),
        ("HELM_DATA_HOME", home.join("data").into()),
        ("KUBECONFIG", home.join("kubeconfig").into()),
    ];
    isolate(&mut command, &env);
    command.current_dir(home);
    let what = format!("helm template of chart {}", job.chart.describe());
    let output = run_engine(
        &mut command,
        tools,
        shown,
        &what,
        format!(
            "rendering a Helm chart needs helm v3 or later, and {} cannot be run: install \
             helm, or set FLOTILLA_HELM to its path",
            helm.display()
        ),
    )?;
    String::from_utf8(output.stdout)
        .map_err(|_| RenderError::in_file(shown, format!("{what} printed text that is not UTF-8")))
}

/// Whether the chart's Chart.yaml lists dependencies.
fn declares_dependencies(chart: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(chart.join("Chart.yaml")) else {
        return false;
    };
    let chart: Result<Value, _> = serde_saphyr::from_str(&text);
    chart.is_ok_and(|chart| {
        chart
            .get("dependencies")
            .and_then(Value::as_array)
            .is_some_and(|list| !list.is_empty())
    })
}

/// The names a kustomization file can have, in kustomize's order of preference.
pub(crate) const KUSTOMIZATION_NAMES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// The kustomization file of `dir`, if any.
pub(crate) fn kustomization_file(dir: &Path) -> Option<PathBuf> {
    KUSTOMIZATION_NAMES
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
}

/// Builds the kustomization in `dir` with the kustomize engine; `shown` names it in errors.
pub(crate) fn kustomize_build(
    tools: &Tools,
    dir: &Path,
    shown: &str,
) -> Result<String, RenderError> {
    let Some(argv) = tools.kustomize() else {
        return Err(RenderError::in_file(
            shown,
            "rendering a Kustomize folder needs kustomize or kubectl, and neither was found: \
             install one, or set FLOTILLA_KUSTOMIZE (e.g. \"kubectl kustomize\")",
        ));
    };
    let temp = tempdir(shown)?;
    let mut command = Command::new(&argv[0]);
    // Kustomize's default, stated so no configuration can loosen it: files only from inside
    // each kustomization's folder (folder bases are checked by `guard` before this runs).
    command
        .args(&argv[1..])
        .arg("--load-restrictor=LoadRestrictionsRootOnly")
        .arg(dir);
    let env: Vec<(&str, OsString)> = vec![
        ("HOME", temp.path().into()),
        ("KUBECONFIG", temp.path().join("kubeconfig").into()),
    ];
    isolate(&mut command, &env);
    command.current_dir(dir);
    let engine = argv.join(" ");
    let output = run_engine(
        &mut command,
        tools,
        shown,
        &format!("`{engine}`"),
        format!(
            "rendering a Kustomize folder needs kustomize or kubectl, and `{engine}` \
             cannot be run: install one, or set FLOTILLA_KUSTOMIZE (e.g. \"kubectl \
             kustomize\")"
        ),
    )?;
    String::from_utf8(output.stdout).map_err(|_| {
        RenderError::in_file(shown, format!("`{engine}` printed text that is not UTF-8"))
    })
}

/// The file Fleet hands a chart's output to kustomize under.
const FLEET_MANIFESTS: &str = "fleet-manifests.yaml";

/// Fleet's Helm + Kustomize combination: the chart's output becomes `fleet-manifests.yaml`, first
/// of the `resources` of the kustomization in `kustomize_dir` (relative to the bundle folder
/// `folder`, itself relative to `root`), and the kustomization's build is the result. Works on a
/// copy of the repository, so bases elsewhere in it resolve as in the checkout and a relative
/// path never leads anywhere else on the machine.
pub(crate) fn kustomize_post_render(
    tools: &Tools,
    root: &Path,
    folder: &str,
    kustomize_dir: &str,
    chart_output: &str,
    shown: &str,
) -> Result<String, RenderError> {
    let temp = tempdir(shown)?;
    let copy = temp.path().join("repo");
    copy_tree(root, &copy).map_err(|e| io(shown, "copy the repository", e))?;
    let bundle = crate::discover::join_inside(&copy, folder).unwrap_or_else(|| copy.clone());
    let dir = crate::discover::join_inside(&bundle, kustomize_dir).unwrap_or(bundle);
    let Some(file) = kustomization_file(&dir) else {
        return Err(RenderError::in_file(shown, "has no kustomization file"));
    };
    std::fs::write(dir.join(FLEET_MANIFESTS), chart_output)
        .map_err(|e| io(shown, "write the chart output", e))?;
    let text =
        std::fs::read_to_string(&file).map_err(|e| io(shown, "read the kustomization", e))?;
    let mut kustomization: Value = serde_saphyr::from_str(&text).map_err(|error| {
        RenderError::in_file(
            shown,
            format!("the kustomization is not valid YAML: {error}"),
        )
    })?;
    if let Value::Object(map) = &mut kustomization {
        let mut resources = match map.remove("resources") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        if !resources
            .iter()
            .any(|item| item.as_str() == Some(FLEET_MANIFESTS))
        {
            resources.insert(0, Value::from(FLEET_MANIFESTS));
        }
        map.insert("resources".into(), Value::Array(resources));
    }
    // JSON is YAML: kustomize reads it back under the same name.
    std::fs::write(
        &file,
        serde_json::to_string(&kustomization).unwrap_or_default(),
    )
    .map_err(|e| io(shown, "write the kustomization", e))?;
    kustomize_build(tools, &dir, shown)
}

fn tempdir(shown: &str) -> Result<tempfile::TempDir, RenderError> {
    tempfile::Builder::new()
        .prefix("flotilla-render-")
        .tempdir()
        .map_err(|e| io(shown, "create a temporary directory", e))
}

fn io(shown: &str, what: &str, error: std::io::Error) -> RenderError {
    RenderError::in_file(shown, format!("cannot {what}: {error}"))
}

/// Copies the directory tree `from` to `to`, leaving out hidden entries and symbolic links.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            copy_tree(&entry.path(), &to.join(&name))?;
        } else if file_type.is_file() {
            std::fs::copy(entry.path(), to.join(&name))?;
        }
    }
    Ok(())
}

/// Runs a rendering engine; every way it can fail becomes an error on `shown` that names `what`
/// (`not_found` when the engine cannot be started at all).
fn run_engine(
    command: &mut Command,
    tools: &Tools,
    shown: &str,
    what: &str,
    not_found: String,
) -> Result<std::process::Output, RenderError> {
    let output = match run(command, tools.timeout()) {
        Ok(output) => output,
        Err(RunError::NotFound) => return Err(RenderError::in_file(shown, not_found)),
        Err(RunError::Spawn(error)) => {
            return Err(RenderError::in_file(
                shown,
                format!("cannot run {what}: {error}"),
            ));
        }
        Err(RunError::Timeout(limit)) => {
            return Err(RenderError::in_file(
                shown,
                format!("{what} did not finish within {} s", limit.as_secs()),
            ));
        }
    };
    if !output.status.success() {
        return Err(RenderError::in_file(
            shown,
            format!("{what} failed: {}", failure_text(&output)),
        ));
    }
    Ok(output)
}
