//! `flotilla render PATH`: renders one folder offline, exactly as the server renders it for a
//! GitRepo, and prints what one cluster with the given name, labels and groups would receive
//! (before the agent adds its ownership labels). Server and command share `flotilla_render` and
//! `flotilla_core`'s targeting and customization, so there is one code path.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::Context;
use clap::Args;
use flotilla_api::{BundleTarget, LabelSelector};
use flotilla_core::{
    customize::{customize, is_cluster_scoped},
    selector::Selector,
    targeting::{ClusterView, compile_targets, deploy_options, first_match, vars_needed},
};
use serde_json::Value;

use crate::{
    args::parse_labels,
    output::{Format, out, print_json},
};

#[derive(Args)]
pub struct RenderArgs {
    /// The folder (inside a git work tree, `../` paths in fleet.yaml resolve from its root).
    path: PathBuf,
    /// The cluster's name (for clusterName targets and `${cluster.name}`).
    #[arg(long, default_value = "local")]
    cluster_name: String,
    /// The cluster's labels: k=v,k2=v2.
    #[arg(long, value_parser = parse_labels, default_value = "")]
    labels: BTreeMap<String, String>,
    /// Cluster groups the cluster belongs to (repeatable).
    #[arg(long = "group")]
    groups: Vec<String>,
    /// A file with the GitRepo whose targets apply (default: one matching every cluster).
    #[arg(long)]
    gitrepo: Option<PathBuf>,
    /// Hosts the render may download from, as the server's --render-allow-hosts
    /// (default: none).
    #[arg(
        long,
        env = "FLOTILLA_RENDER_ALLOW_HOSTS",
        value_delimiter = ',',
        default_value = ""
    )]
    render_allow_hosts: Vec<String>,
    /// Output format of the manifests.
    #[arg(short = 'o', long = "output", value_enum, default_value = "yaml")]
    output: Format,
}

/// The GitRepo targets and keepResources: from `--gitrepo`, else one target matching everything.
fn gitrepo_targets(file: Option<&Path>) -> anyhow::Result<(Vec<BundleTarget>, bool)> {
    let Some(file) = file else {
        let everything = BundleTarget {
            cluster_selector: Some(LabelSelector::default()),
            ..BundleTarget::default()
        };
        return Ok((vec![everything], false));
    };
    let documents = crate::documents::read(&file.display().to_string())?;
    let document = documents
        .into_iter()
        .find(|d| d.value.get("kind").and_then(Value::as_str) == Some("GitRepo"))
        .with_context(|| format!("{} holds no GitRepo document", file.display()))?;
    let repo: flotilla_api::GitRepo =
        serde_path_to_error::deserialize(document.value).map_err(|e| {
            anyhow::anyhow!(
                "{}: invalid GitRepo at {}: {}",
                file.display(),
                e.path(),
                e.inner()
            )
        })?;
    Ok((repo.spec.targets, repo.spec.keep_resources))
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
fn manifests_for(args: &RenderArgs) -> anyhow::Result<Option<Vec<Value>>> {
    let RenderArgs {
        path,
        cluster_name,
        labels,
        groups,
        gitrepo,
        render_allow_hosts,
        output: _,
    } = args;
    let (root, folder) = root_and_folder(path)?;
    let tools = flotilla_render::Tools::detect().with_allowed_hosts(render_allow_hosts);
    let rendered = flotilla_render::render_folder(&root, &folder, &tools)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (repo_targets, keep_resources) = gitrepo_targets(gitrepo.as_deref())?;
    let spec = flotilla_render::bundle_spec(&rendered, &repo_targets, keep_resources)
        .map_err(anyhow::Error::msg)?;
    let targets = compile_targets(&spec.targets).map_err(anyhow::Error::msg)?;
    let view = ClusterView {
        name: cluster_name,
        label: |key: &str| labels.get(key).map(String::as_str),
    };
    // Groups live on the server: the clusters of a named group are those `--group` says.
    let everyone = Selector::everything();
    let groups = |name: &str| groups.iter().any(|g| g == name).then_some(&everyone);
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
            "{} is not deployed to a cluster named {:?} with these labels and groups: no target matches it, or a doNotDeploy targetCustomization does",
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
