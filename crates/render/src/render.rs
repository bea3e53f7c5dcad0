//! Rendering one folder: the default rendering and one per fleet.yaml target customization.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::discover::{self, FLEET_YAML_NAMES};
use crate::engines::{self, ChartRef, HelmJob, KUSTOMIZATION_NAMES};
use crate::fleetyaml::{self, FleetYaml, HelmOptions, Options};
use crate::manifests::{self, Manifest};
use crate::overlay::{self, Source};
use crate::{RenderError, RenderedCustomization, RenderedFolder, Tools, guard, values};

/// Renders `folder` (relative to `root`; `.` or empty for the root) for the whole fleet: the
/// default rendering, and one per fleet.yaml target customization whose options change what is
/// rendered (`resources` is `None` when a customization renders the same as the default, and
/// for `doNotDeploy` customizations, which deploy nothing).
///
/// The folder renders as a Helm chart when fleet.yaml's `helm` names one (`chart`, `repo`) or the
/// folder has a Chart.yaml; else with Kustomize when the kustomize directory (`kustomize.dir`,
/// default the folder) has a kustomization file; else as raw YAML. A chart's output goes through
/// the kustomization when both are present, as in Fleet.
///
/// Nothing outside `root` is read: a kustomization or chart that points outside it, or at a
/// remote host `tools` does not allow, fails the rendering naming the file and the path.
pub fn render_folder(
    root: &Path,
    folder: &str,
    tools: &Tools,
) -> Result<RenderedFolder, RenderError> {
    // The engines run in other working directories: a relative root would point elsewhere.
    let root = &std::path::absolute(root).map_err(|error| {
        RenderError::plain(format!(
            "cannot resolve the repository path {}: {error}",
            root.display()
        ))
    })?;
    let folder = discover::normalize_folder(folder);
    let dir = if folder == "." {
        root.to_path_buf()
    } else {
        discover::join_inside(root, &folder)
            .ok_or_else(|| RenderError::in_file(&folder, "leaves the repository"))?
    };
    if !dir.is_dir() {
        return Err(RenderError::in_file(
            &folder,
            "is not a folder of the repository",
        ));
    }
    let shown = |relative: &str| join_shown(&folder, relative);
    let (fleet, config_shown) = match discover::fleet_yaml_path(&dir) {
        Some(path) => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let file = shown(&name);
            let text = overlay::Source::Disk(path).read(&file)?;
            (fleetyaml::parse(&file, &text)?, file)
        }
        None => (FleetYaml::default(), folder.clone()),
    };
    let files = discover::collect_files(root, &folder)?;
    let context = Context {
        root,
        folder: &folder,
        dir: &dir,
        files,
        fleet: &fleet,
        tools,
        config_shown: &config_shown,
    };
    let base = context.root_options()?;
    let resources = context.render(&base)?;
    let mut customizations = Vec::new();
    for spec in &fleet.customizations {
        let resources = if spec.do_not_deploy {
            None
        } else {
            let prefix = |error: RenderError| RenderError {
                file: error.file,
                message: format!("{}: {}", spec.label, error.message),
            };
            let options = context.customized(&base, &spec.options).map_err(prefix)?;
            if options == base {
                None
            } else {
                let rendered = context.render(&options).map_err(prefix)?;
                (rendered != resources).then_some(rendered)
            }
        };
        customizations.push(RenderedCustomization {
            name: spec.name.clone(),
            cluster_selector: spec.cluster_selector.clone(),
            cluster_group: spec.cluster_group.clone(),
            cluster_name: spec.cluster_name.clone(),
            default_namespace: spec.options.default_namespace.clone(),
            do_not_deploy: spec.do_not_deploy,
            resources,
        });
    }
    Ok(RenderedFolder {
        folder: folder.clone(),
        name: fleet.name.clone(),
        labels: fleet.labels.clone(),
        default_namespace: fleet.options.default_namespace.clone(),
        keep_resources: fleet.keep_resources,
        paused: fleet.paused,
        depends_on: fleet.depends_on.clone(),
        drift_ignore: fleet.drift_ignore.clone(),
        rollout: fleet.rollout.clone(),
        override_targets: fleet.override_targets.clone(),
        resources,
        customizations,
    })
}

/// fleet.yaml's `name` for `folder`, read leniently (without rendering anything): the bundle
/// name a folder claims even when it fails to render, so its status can name it.
pub fn declared_name(root: &Path, folder: &str) -> Option<String> {
    let folder = discover::normalize_folder(folder);
    let dir = discover::join_inside(root, &folder)?;
    let text = std::fs::read_to_string(discover::fleet_yaml_path(&dir)?).ok()?;
    let fleet: Value = serde_saphyr::from_str(&text).ok()?;
    fleet.get("name")?.as_str().map(String::from)
}

/// `relative` (inside `folder`) as a path relative to the repository root.
fn join_shown(folder: &str, relative: &str) -> String {
    match (folder, relative) {
        (".", "") => ".".to_string(),
        (".", relative) => relative.to_string(),
        (folder, "") => folder.to_string(),
        (folder, relative) => format!("{folder}/{relative}"),
    }
}

/// The options one rendering uses, resolved (values files read and merged).
#[derive(Debug, Clone, PartialEq)]
struct Effective {
    /// Forced namespace.
    namespace: Option<String>,
    default_namespace: Option<String>,
    helm: HelmOptions,
    kustomize_dir: Option<String>,
    overlays: Vec<String>,
}

/// How a folder renders under some options.
enum Mode {
    Helm {
        chart: ChartRef,
        /// The kustomize directory, when a kustomization post-renders the chart.
        post_render: Option<String>,
    },
    Kustomize {
        dir: PathBuf,
        shown: String,
    },
    Raw,
}

struct Context<'a> {
    root: &'a Path,
    folder: &'a str,
    dir: &'a Path,
    files: BTreeMap<String, PathBuf>,
    fleet: &'a FleetYaml,
    tools: &'a Tools,
    /// fleet.yaml's path, or the folder's when it has none: what option errors point at.
    config_shown: &'a str,
}

impl Context<'_> {
    fn shown(&self, relative: &str) -> String {
        join_shown(self.folder, relative)
    }

    /// `relative` (to the folder) as a path in the checkout; `None` when it leaves the checkout.
    /// Charts and values files may live elsewhere in the repository (`../shared/chart`).
    fn inside_root(&self, relative: &str) -> Option<PathBuf> {
        discover::join_inside(self.root, &format!("{}/{relative}", self.folder))
    }

    /// A directory inside the folder (`.` for the folder) relative to the repository root.
    fn shown_dir(&self, dir: &str) -> String {
        match discover::normalize_folder(dir).as_str() {
            "." => self.shown(""),
            dir => self.shown(dir),
        }
    }

    fn error(&self, message: impl Into<String>) -> RenderError {
        RenderError::in_file(self.config_shown, message)
    }

    fn root_options(&self) -> Result<Effective, RenderError> {
        let options = &self.fleet.options;
        let mut helm = options.helm.clone().unwrap_or_default();
        // Fleet: values first, each values file merged over them in order.
        let from_files = self.values_files(&helm.values_files, "helm.valuesFiles")?;
        values::deep_merge(&mut helm.values, &from_files);
        Ok(Effective {
            namespace: options.namespace.clone(),
            default_namespace: options.default_namespace.clone(),
            helm,
            kustomize_dir: options.kustomize_dir.clone(),
            overlays: options.overlays.clone(),
        })
    }

    /// `base` with a customization's options merged in, as Fleet merges them: set strings
    /// override, Helm values merge recursively (the customization's values, then its values
    /// files, over the base's), overlays append.
    fn customized(&self, base: &Effective, options: &Options) -> Result<Effective, RenderError> {
        let mut out = base.clone();
        if options.namespace.is_some() {
            out.namespace = options.namespace.clone();
        }
        if options.default_namespace.is_some() {
            out.default_namespace = options.default_namespace.clone();
        }
        if let Some(helm) = &options.helm {
            let override_with = |slot: &mut Option<String>, value: &Option<String>| {
                if value.is_some() {
                    *slot = value.clone();
                }
            };
            override_with(&mut out.helm.chart, &helm.chart);
            override_with(&mut out.helm.repo, &helm.repo);
            override_with(&mut out.helm.version, &helm.version);
            override_with(&mut out.helm.release_name, &helm.release_name);
            let mut values = helm.values.clone();
            let from_files = self.values_files(&helm.values_files, "helm.valuesFiles")?;
            values::deep_merge(&mut values, &from_files);
            values::deep_merge(&mut out.helm.values, &values);
            out.helm
                .values_files
                .extend(helm.values_files.iter().cloned());
            out.helm.disable_pre_process |= helm.disable_pre_process;
            out.helm.disable_dependency_update |= helm.disable_dependency_update;
            out.helm.skip_schema_validation |= helm.skip_schema_validation;
        }
        if options.kustomize_dir.is_some() {
            out.kustomize_dir = options.kustomize_dir.clone();
        }
        out.overlays.extend(options.overlays.iter().cloned());
        Ok(out)
    }

    /// The values files (relative to the folder), merged in order.
    fn values_files(&self, files: &[String], key: &str) -> Result<Map<String, Value>, RenderError> {
        let mut merged = Map::new();
        for (index, file) in files.iter().enumerate() {
            let at = format!("{key}[{index}]");
            let path = self
                .inside_root(file)
                .filter(|path| path.is_file() && discover::resolves_inside(self.root, path))
                .ok_or_else(|| {
                    self.error(format!("{at}: {file} is not a file inside the repository"))
                })?;
            let shown = path
                .strip_prefix(self.root)
                .map(|relative| discover::normalize_folder(&relative.to_string_lossy()))
                .unwrap_or_else(|_| file.clone());
            let text = Source::Disk(path).read(&shown)?;
            let documents = manifests::split_documents(&shown, &text)?;
            for (_, document) in documents {
                match document {
                    Value::Object(values) => values::deep_merge(&mut merged, &values),
                    other => {
                        return Err(RenderError::in_file(
                            shown,
                            format!(
                                "is a values file for {at} but holds {}, not a mapping",
                                fleetyaml::type_name(&other)
                            ),
                        ));
                    }
                }
            }
        }
        Ok(merged)
    }

    fn mode(&self, options: &Effective) -> Result<Mode, RenderError> {
        let helm = &options.helm;
        let chart = match (&helm.repo, &helm.chart) {
            (Some(repo), Some(chart)) => Some(ChartRef::Repo {
                repo: repo.clone(),
                chart: chart.clone(),
            }),
            (Some(_), None) => {
                return Err(self.error(
                    "helm.repo is set but helm.chart is not: set chart to the chart's name in \
                     the repository",
                ));
            }
            (None, Some(chart)) => Some(self.chart_reference(chart)?),
            (None, None) if self.dir.join("Chart.yaml").is_file() => Some(ChartRef::Local {
                path: self.dir.to_path_buf(),
                shown: self.folder.to_string(),
            }),
            (None, None) => None,
        };
        let kustomize_dir = options.kustomize_dir.as_deref().unwrap_or(".");
        let kustomize_path = discover::join_inside(self.dir, kustomize_dir)
            .filter(|path| path.starts_with(self.dir))
            .ok_or_else(|| {
                self.error(format!("kustomize.dir {kustomize_dir:?} leaves the folder"))
            })?;
        let has_kustomization = engines::kustomization_file(&kustomize_path).is_some()
            && discover::resolves_inside(self.root, &kustomize_path);
        if options.kustomize_dir.is_some() && !has_kustomization {
            return Err(self.error(format!(
                "kustomize.dir {kustomize_dir:?} has no kustomization.yaml (or .yml, Kustomization)"
            )));
        }
        Ok(match chart {
            Some(chart) => Mode::Helm {
                chart,
                post_render: has_kustomization.then(|| kustomize_dir.to_string()),
            },
            None if has_kustomization => Mode::Kustomize {
                shown: self.shown_dir(kustomize_dir),
                dir: kustomize_path,
            },
            None => Mode::Raw,
        })
    }

    /// What fleet.yaml's `helm.chart` (without `repo`) refers to.
    fn chart_reference(&self, chart: &str) -> Result<ChartRef, RenderError> {
        if chart.starts_with("oci://")
            || chart.starts_with("https://")
            || chart.starts_with("http://")
        {
            return Ok(ChartRef::Url(chart.to_string()));
        }
        if chart.contains("::") || chart.starts_with("git@") || chart.contains("//") {
            return Err(self.error(format!(
                "helm.chart {chart:?} is a go-getter source, which flotilla does not fetch: use a \
                 chart folder in the repository, helm.repo with the chart's name, an oci:// \
                 reference or an https:// URL of a packaged chart"
            )));
        }
        let path = self
            .inside_root(chart)
            .filter(|path| path.exists() && discover::resolves_inside(self.root, path))
            .ok_or_else(|| {
                self.error(format!(
                    "helm.chart {chart:?} is not a chart in the repository (paths are relative \
                     to the folder); for a chart from a chart repository also set helm.repo, \
                     for a registry use an oci:// reference"
                ))
            })?;
        let relative = path
            .strip_prefix(self.root)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| chart.to_string());
        Ok(ChartRef::Local {
            path,
            shown: discover::normalize_folder(&relative),
        })
    }

    /// One rendering under `options`: ordered, checked manifests.
    fn render(&self, options: &Effective) -> Result<Vec<Value>, RenderError> {
        let mut found = Vec::new();
        match self.mode(options)? {
            Mode::Helm { chart, post_render } => {
                self.render_helm(options, &chart, post_render.as_deref(), &mut found)?
            }
            Mode::Kustomize { dir, shown } => {
                guard::check_kustomization(self.root, &dir, self.tools)?;
                let output = engines::kustomize_build(self.tools, &dir, &shown)?;
                self.extract_output(&shown, "kustomize output ", &output, &mut found)?;
            }
            Mode::Raw => self.render_raw(options, &mut found)?,
        }
        manifests::finish(found, options.namespace.as_deref(), self.config_shown)
    }

    fn extract_output(
        &self,
        file: &str,
        prefix: &str,
        output: &str,
        found: &mut Vec<Manifest>,
    ) -> Result<(), RenderError> {
        let documents = manifests::split_documents(file, output).map_err(|error| RenderError {
            file: error.file,
            message: format!("{}: {}", prefix.trim(), error.message),
        })?;
        manifests::extract(file, prefix, documents, found)
    }

    fn render_helm(
        &self,
        options: &Effective,
        chart: &ChartRef,
        post_render: Option<&str>,
        found: &mut Vec<Manifest>,
    ) -> Result<(), RenderError> {
        let helm = &options.helm;
        let values = if helm.disable_pre_process {
            helm.values.clone()
        } else {
            values::translate(&helm.values, "helm.values").map_err(|message| self.error(message))?
        };
        let release = match &helm.release_name {
            Some(name) => name.clone(),
            None => self.default_release_name(chart),
        };
        let namespace = options
            .namespace
            .as_deref()
            .or(options.default_namespace.as_deref())
            .unwrap_or("default");
        let dependency_update = !helm.disable_dependency_update;
        guard::check_chart(
            self.root,
            chart,
            dependency_update,
            self.tools,
            self.config_shown,
        )?;
        if let Some(dir) = post_render {
            let path =
                discover::join_inside(self.dir, dir).unwrap_or_else(|| self.dir.to_path_buf());
            guard::check_kustomization(self.root, &path, self.tools)?;
        }
        let job = HelmJob {
            root: self.root,
            chart,
            release: &release,
            namespace,
            version: helm.version.as_deref(),
            values: &values,
            skip_schema_validation: helm.skip_schema_validation,
            dependency_update,
        };
        let output = engines::helm_template(self.tools, &job, self.config_shown)?;
        match post_render {
            Some(dir) => {
                let shown = self.shown_dir(dir);
                let output = if output.trim().is_empty() {
                    let path = discover::join_inside(self.dir, dir)
                        .unwrap_or_else(|| self.dir.to_path_buf());
                    engines::kustomize_build(self.tools, &path, &shown)?
                } else {
                    engines::kustomize_post_render(
                        self.tools,
                        self.root,
                        self.folder,
                        dir,
                        &output,
                        &shown,
                    )?
                };
                self.extract_output(&shown, "kustomize output ", &output, found)
            }
            None => self.extract_output(self.config_shown, "helm template output ", &output, found),
        }
    }

    /// The release name when fleet.yaml sets none: the folder's last segment; for the
    /// repository root, fleet.yaml's `name`, else the chart's name.
    fn default_release_name(&self, chart: &ChartRef) -> String {
        let candidate = if self.folder != "." {
            self.folder
                .rsplit('/')
                .next()
                .unwrap_or(self.folder)
                .to_string()
        } else if let Some(name) = &self.fleet.name {
            name.clone()
        } else {
            match chart {
                ChartRef::Repo { chart, .. } => chart.clone(),
                ChartRef::Url(url) => url
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .trim_end_matches(".tgz")
                    .to_string(),
                ChartRef::Local { path, .. } => chart_name(path).unwrap_or_default(),
            }
        };
        let name = crate::naming::release_name(&candidate);
        if name.is_empty() {
            "release".to_string()
        } else {
            name
        }
    }

    fn render_raw(
        &self,
        options: &Effective,
        found: &mut Vec<Manifest>,
    ) -> Result<(), RenderError> {
        let mut files: BTreeMap<String, Source> = self
            .files
            .iter()
            .map(|(path, disk)| (path.clone(), Source::Disk(disk.clone())))
            .collect();
        let shown = |relative: &str| self.shown(relative);
        overlay::apply(&mut files, &options.overlays, &shown)?;
        // Charts below the folder are not raw YAML (Fleet skips them unless helm.chart names them).
        let chart_dirs: Vec<String> = files
            .keys()
            .filter_map(|path| path.strip_suffix("/Chart.yaml"))
            .map(|dir| format!("{dir}/"))
            .collect();
        // Values files are options, not manifests (of the folder and of every customization).
        let mut values_files: BTreeSet<String> = BTreeSet::new();
        let all_options = std::iter::once(&self.fleet.options)
            .chain(self.fleet.customizations.iter().map(|spec| &spec.options));
        for options in all_options {
            if let Some(helm) = &options.helm {
                values_files.extend(
                    helm.values_files
                        .iter()
                        .map(|f| discover::normalize_folder(f)),
                );
            }
        }
        for (path, source) in &files {
            let name = path.rsplit('/').next().unwrap_or(path);
            let in_chart = chart_dirs.iter().any(|dir| path.starts_with(dir));
            if KUSTOMIZATION_NAMES.contains(&name) && !path.starts_with("overlays/") && !in_chart {
                // Fleet deploys such a folder's files as plain YAML and ignores its kustomization:
                // never what was meant, so say so instead of shipping or dropping it.
                let nested = path.rsplit_once('/').map_or("", |(dir, _)| dir);
                return Err(RenderError::in_file(
                    self.shown(path),
                    format!(
                        "is a Kustomize folder inside the raw-YAML bundle {}, which would deploy \
                         its files as plain YAML and ignore the kustomization: add a fleet.yaml to \
                         {} to make it a bundle of its own, list it in the resources of a \
                         kustomization.yaml in {}, or add it to .fleetignore",
                        self.shown(""),
                        self.shown(nested),
                        self.shown("")
                    ),
                ));
            }
            let is_manifest_file = [".yaml", ".yml", ".json"]
                .iter()
                .any(|ext| name.ends_with(ext));
            let skip = !is_manifest_file
                || path.starts_with("overlays/")
                || (!path.contains('/') && FLEET_YAML_NAMES.contains(&name))
                || KUSTOMIZATION_NAMES.contains(&name)
                || in_chart
                || values_files.contains(path);
            if skip {
                continue;
            }
            let file = self.shown(path);
            let text = source.read(&file)?;
            if path.starts_with("templates/") && text.contains("{{") {
                return Err(RenderError::in_file(
                    file,
                    "is a Helm template outside a chart (Fleet renders a raw folder's templates/ \
                     with Helm; flotilla does not): add a Chart.yaml to make the folder a chart",
                ));
            }
            let documents = if name.ends_with(".json") {
                manifests::json_document(&file, &text)?
            } else {
                manifests::split_documents(&file, &text)?
            };
            manifests::extract(&file, "", documents, found)?;
        }
        Ok(())
    }
}

/// The `name` in a chart folder's Chart.yaml.
fn chart_name(chart: &Path) -> Option<String> {
    let text = std::fs::read_to_string(chart.join("Chart.yaml")).ok()?;
    let chart: Value = serde_saphyr::from_str(&text).ok()?;
    chart.get("name")?.as_str().map(String::from)
}
