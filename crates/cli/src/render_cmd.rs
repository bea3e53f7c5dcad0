//! `flotilla render PATH`: renders one folder offline, exactly as the server renders it for a
//! GitRepo, and prints what one cluster with the given name, labels and groups would receive
//! (before the agent adds its ownership labels). Server and command share `flotilla_render` and
//! `flotilla_core`'s targeting and customization, so there is one code path.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::Context;
use flotilla_api::{BundleTarget, LabelSelector};
use flotilla_core::{
    customize::{customize, is_cluster_scoped},
    selector::Selector,
    targeting::{ClusterView, compile_targets, deploy_options, first_match, vars_needed},
};
use serde_json::Value;

use crate::output::{Format, out, print_json};

pub struct RenderArgs {
    pub path: PathBuf,
    pub cluster_name: String,
    pub labels: BTreeMap<String, String>,
    pub groups: Vec<String>,
    pub output: Format,
}

/// The repository root a folder belongs to (its git work tree, else the folder itself) and the
/// folder relative to it, so `../` references in fleet.yaml resolve as on the server.
fn root_and_folder(path: &Path) -> anyhow::Result<(PathBuf, String)> {
    let path = path
        .canonicalize()
        .with_context(|| format!("{} does not exist", path.display()))?;
    if !path.is_dir() {
        anyhow::bail!("{} is not a folder", path.display());
    }
    let toplevel = std::process::Command::new("git")
        .arg("-C")
        .arg(&path)
        .args(["rev-parse", "--show-toplevel"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|text| PathBuf::from(text.trim()))
        .and_then(|root| root.canonicalize().ok());
    let root = toplevel.unwrap_or_else(|| path.clone());
    let folder = path
        .strip_prefix(&root)
        .map(|rel| rel.to_string_lossy().into_owned())
        .unwrap_or_default();
    let folder = if folder.is_empty() {
        ".".into()
    } else {
        folder
    };
    Ok((root, folder))
}

/// The manifests the cluster receives, or `None` when the folder is not deployed to it.
pub fn manifests_for(args: &RenderArgs) -> anyhow::Result<Option<Vec<Value>>> {
    let (root, folder) = root_and_folder(&args.path)?;
    let tools = flotilla_render::Tools::detect();
    let rendered = flotilla_render::render_folder(&root, &folder, &tools)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // The cluster is assumed to be within the GitRepo's targets: one target matching everything.
    let everything = BundleTarget {
        cluster_selector: Some(LabelSelector::default()),
        ..BundleTarget::default()
    };
    let spec = flotilla_render::bundle_spec(&rendered, &[everything], false)
        .map_err(anyhow::Error::msg)?;
    let targets = compile_targets(&spec.targets).map_err(anyhow::Error::msg)?;
    let labels = &args.labels;
    let view = ClusterView {
        name: &args.cluster_name,
        label: |key: &str| labels.get(key).map(String::as_str),
    };
    // Groups live on the server: the clusters of a named group are those `--group` says.
    let everyone = Selector::everything();
    let groups = |name: &str| args.groups.iter().any(|g| g == name).then_some(&everyone);
    let Some(index) = first_match(&targets, &view, &groups) else {
        return Ok(None);
    };
    if targets[index].do_not_deploy {
        return Ok(None);
    }
    let target = &spec.targets[index];
    let resources = target.resources.as_ref().unwrap_or(&spec.resources);
    // The placeholders resolved per cluster, as the server computes them for a live revision.
    let vars = vars_needed(&spec.resources, &spec.targets);
    let options = deploy_options(
        &target.customization,
        spec.keep_resources,
        &spec.drift,
        &vars,
        &view,
    );
    let manifests = customize(resources, &options, &|api_version, kind| {
        !is_cluster_scoped(api_version, kind)
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Some(manifests))
}

pub fn run(args: RenderArgs) -> anyhow::Result<()> {
    let Some(manifests) = manifests_for(&args)? else {
        eprintln!(
            "{} is not deployed to a cluster named {:?} with these labels and groups (a doNotDeploy targetCustomization matches it)",
            args.path.display(),
            args.cluster_name
        );
        return Ok(());
    };
    match args.output {
        Format::Json => print_json(&Value::Array(manifests)),
        Format::Yaml | Format::Table => {
            let mut text = String::new();
            for manifest in &manifests {
                text.push_str("---\n");
                text.push_str(&serde_saphyr::to_string(manifest).context("render YAML")?);
            }
            out(&text)
        }
    }
}
