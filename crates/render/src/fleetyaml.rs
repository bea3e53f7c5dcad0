//! Reading a folder's fleet.yaml (Rancher Fleet's bundle options file).
//!
//! Every key Fleet's `FleetYAML` knows is accepted. Keys flotilla acts on are read and checked;
//! keys that only tune Fleet's own agent (service account, Helm install flags…) are accepted and
//! ignored; a key Fleet does not know is an error naming it, so a typo never silently changes what
//! is deployed.
//!
//! `rolloutStrategy` becomes the bundle's `spec.rollout` (the `rollout` child module says how);
//! what flotilla cannot do the way Fleet does (partitions by cluster name or group, a budget of
//! unhealthy partitions, partitions of a fixed size) is refused, naming the key.

use std::collections::BTreeMap;

use flotilla_api::{BundleTarget, DriftIgnore, IntOrPercent, LabelSelector};
use flotilla_core::rollout::strategy::{self, Amount};
use serde_json::{Map, Value};

use crate::{DependsOn, RenderError};

mod rollout;

/// Top-level keys flotilla reads.
const TOP_USED: &[&str] = &[
    "name",
    "labels",
    "defaultNamespace",
    "namespace",
    "helm",
    "kustomize",
    "yaml",
    "diff",
    "keepResources",
    "paused",
    "dependsOn",
    "targetCustomizations",
    "targets",
    "overrideTargets",
    "rolloutStrategy",
];

/// Top-level keys Fleet knows that only configure Fleet's controller or agent.
const TOP_IGNORED: &[&str] = &[
    "annotations",
    "serviceAccount",
    "forceSyncGeneration",
    "ignore",
    "correctDrift",
    "namespaceLabels",
    "namespaceAnnotations",
    "deleteCRDResources",
    "deleteNamespace",
    "imageScans",
    "targetRestrictions",
    "contentsId",
    "valuesHash",
    "resources",
    "downstreamResources",
];

/// Keys of a `targetCustomizations` entry flotilla reads.
const CUSTOMIZATION_USED: &[&str] = &[
    "name",
    "clusterSelector",
    "clusterGroup",
    "clusterName",
    "doNotDeploy",
    "defaultNamespace",
    "namespace",
    "helm",
    "kustomize",
    "yaml",
];

/// Keys of a `targetCustomizations` entry Fleet knows that flotilla ignores (per-target agent
/// tuning; drift and deletion settings are bundle-wide in flotilla).
const CUSTOMIZATION_IGNORED: &[&str] = &[
    "serviceAccount",
    "forceSyncGeneration",
    "diff",
    "keepResources",
    "deleteNamespace",
    "ignore",
    "correctDrift",
    "namespaceLabels",
    "namespaceAnnotations",
    "deleteCRDResources",
    "downstreamResources",
];

const HELM_USED: &[&str] = &[
    "chart",
    "repo",
    "version",
    "releaseName",
    "values",
    "valuesFiles",
    "valuesFrom",
    "disablePreProcess",
    "disableDependencyUpdate",
    "skipSchemaValidation",
];

/// Helm keys that tune how Fleet's agent installs a release; `helm template` has no use for them.
const HELM_IGNORED: &[&str] = &[
    "takeOwnership",
    "force",
    "atomic",
    "timeoutSeconds",
    "maxHistory",
    "waitForJobs",
    "disableDNS",
];

/// The rendering options of fleet.yaml's root or of one target customization.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Options {
    /// `namespace`: forced on every object.
    pub namespace: Option<String>,
    pub default_namespace: Option<String>,
    pub helm: Option<HelmOptions>,
    pub kustomize_dir: Option<String>,
    pub overlays: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct HelmOptions {
    pub chart: Option<String>,
    pub repo: Option<String>,
    pub version: Option<String>,
    pub release_name: Option<String>,
    /// `values`, an object (empty when unset).
    pub values: Map<String, Value>,
    pub values_files: Vec<String>,
    pub disable_pre_process: bool,
    pub disable_dependency_update: bool,
    pub skip_schema_validation: bool,
}

/// One `targetCustomizations` (or `targets`) entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CustomizationSpec {
    /// Where it is in fleet.yaml, for messages: `targetCustomizations[1] (prod)`.
    pub label: String,
    pub name: Option<String>,
    pub cluster_selector: Option<LabelSelector>,
    pub cluster_group: Option<String>,
    pub cluster_name: Option<String>,
    pub do_not_deploy: bool,
    pub options: Options,
}

/// What fleet.yaml says about a folder.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FleetYaml {
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub keep_resources: bool,
    pub paused: bool,
    pub depends_on: Vec<DependsOn>,
    pub drift_ignore: Vec<DriftIgnore>,
    /// `rolloutStrategy`, mapped onto `spec.rollout`.
    pub rollout: Option<flotilla_api::RolloutStrategy>,
    pub options: Options,
    pub customizations: Vec<CustomizationSpec>,
    pub override_targets: Option<Vec<BundleTarget>>,
}

/// Parses fleet.yaml's text; `file` (the path relative to the repository root) names it in errors.
pub(crate) fn parse(file: &str, text: &str) -> Result<FleetYaml, RenderError> {
    // Fleet reads typed fields the way Kubernetes' YAML library does: a string field keeps `off`
    // as text, a boolean field takes `yes`, and untyped Helm values follow YAML 1.1. So fleet.yaml
    // is read twice: with YAML 1.2 booleans for the structure, with YAML 1.1 for values.
    let one = |documents: Vec<(usize, Value)>| match documents.as_slice() {
        [] => Ok(Value::Null),
        [(_, value)] => Ok(value.clone()),
        _ => Err(RenderError::in_file(
            file,
            "has several YAML documents; fleet.yaml is one document",
        )),
    };
    let strict = one(crate::manifests::split_documents_strict(file, text)?)?;
    let loose = one(crate::manifests::split_documents(file, text)?)?;
    let top = Fields::new(file, Node::new(&strict, &loose), "", TOP_USED, TOP_IGNORED)?;
    let mut fleet = FleetYaml {
        name: top.string("name")?,
        labels: top.string_map("labels")?,
        keep_resources: top.bool("keepResources")?,
        paused: top.bool("paused")?,
        options: options(&top)?,
        ..FleetYaml::default()
    };
    for (index, item) in top.list("dependsOn")?.into_iter().enumerate() {
        let path = format!("dependsOn[{index}]");
        let entry = Fields::new(
            file,
            item,
            &path,
            &["name", "selector"],
            &["acceptedStates"],
        )?;
        let depends = DependsOn {
            name: entry.string("name")?,
            selector: entry.selector("selector")?,
        };
        if depends.name.is_none() && depends.selector.is_none() {
            return Err(top.error(&path, "set name or selector"));
        }
        fleet.depends_on.push(depends);
    }
    if let Some(diff) = top.node("diff") {
        let diff = Fields::new(file, diff, "diff", &["comparePatches"], &[])?;
        for (index, item) in diff.list("comparePatches")?.into_iter().enumerate() {
            let path = format!("diff.comparePatches[{index}]");
            fleet.drift_ignore.push(compare_patch(file, item, &path)?);
        }
    }
    // Fleet appends targetCustomizations to fleet.yaml's own `targets`: both customize.
    for key in ["targets", "targetCustomizations"] {
        for (index, item) in top.list(key)?.into_iter().enumerate() {
            fleet
                .customizations
                .push(customization(file, item, &format!("{key}[{index}]"))?);
        }
    }
    if let Some(node) = top.node("rolloutStrategy") {
        fleet.rollout = Some(rollout::rollout_strategy(file, node)?);
    }
    if top.get("overrideTargets").is_some() {
        let mut targets = Vec::new();
        for (index, item) in top.list("overrideTargets")?.into_iter().enumerate() {
            targets.push(override_target(
                file,
                item,
                &format!("overrideTargets[{index}]"),
            )?);
        }
        fleet.override_targets = Some(targets);
    }
    Ok(fleet)
}

fn customization(
    file: &str,
    value: Node<'_>,
    path: &str,
) -> Result<CustomizationSpec, RenderError> {
    let fields = Fields::new(
        file,
        value,
        path,
        &[CUSTOMIZATION_USED, &["clusterGroupSelector"]].concat(),
        CUSTOMIZATION_IGNORED,
    )?;
    if fields.get("clusterGroupSelector").is_some() {
        return Err(fields.error(
            &fields.path("clusterGroupSelector"),
            "is not supported by flotilla (groups have no labels): use clusterGroup or \
             clusterSelector",
        ));
    }
    let name = fields.string("name")?;
    let label = match &name {
        Some(name) => format!("{path} ({name})"),
        None => path.to_string(),
    };
    Ok(CustomizationSpec {
        label,
        name,
        cluster_selector: fields.selector("clusterSelector")?,
        cluster_group: fields.string("clusterGroup")?,
        cluster_name: fields.string("clusterName")?,
        do_not_deploy: fields.bool("doNotDeploy")?,
        options: options(&fields)?,
    })
}

fn override_target(file: &str, value: Node<'_>, path: &str) -> Result<BundleTarget, RenderError> {
    let used = ["name", "clusterName", "clusterSelector", "clusterGroup"];
    let fields = Fields::new(
        file,
        value,
        path,
        &[&used[..], &["clusterGroupSelector"]].concat(),
        &[],
    )?;
    if fields.get("clusterGroupSelector").is_some() {
        return Err(fields.error(
            &fields.path("clusterGroupSelector"),
            "is not supported by flotilla (groups have no labels): use clusterGroup or \
             clusterSelector",
        ));
    }
    Ok(BundleTarget {
        name: fields.string("name")?,
        cluster_selector: fields.selector("clusterSelector")?,
        cluster_group: fields.string("clusterGroup")?,
        cluster_name: fields.string("clusterName")?,
        ..BundleTarget::default()
    })
}

/// The rendering options at fleet.yaml's root or in a customization.
fn options(fields: &Fields<'_>) -> Result<Options, RenderError> {
    let namespace = fields.string("namespace")?;
    let default_namespace = fields.string("defaultNamespace")?;
    for (key, value) in [
        ("namespace", &namespace),
        ("defaultNamespace", &default_namespace),
    ] {
        if let Some(value) = value {
            flotilla_core::validate::validate_dns_label(value).map_err(|error| {
                fields.error(
                    &fields.path(key),
                    &format!("is not a namespace name: {error}"),
                )
            })?;
        }
    }
    let helm = match fields.node("helm") {
        Some(value) => Some(helm_options(fields.file, value, &fields.path("helm"))?),
        None => None,
    };
    let kustomize_dir = match fields.node("kustomize") {
        Some(value) => Fields::new(fields.file, value, &fields.path("kustomize"), &["dir"], &[])?
            .string("dir")?,
        None => None,
    };
    let overlays = match fields.node("yaml") {
        Some(value) => Fields::new(fields.file, value, &fields.path("yaml"), &["overlays"], &[])?
            .string_list("overlays")?,
        None => Vec::new(),
    };
    Ok(Options {
        namespace,
        default_namespace,
        helm,
        kustomize_dir,
        overlays,
    })
}

fn helm_options(file: &str, value: Node<'_>, path: &str) -> Result<HelmOptions, RenderError> {
    let fields = Fields::new(file, value, path, HELM_USED, HELM_IGNORED)?;
    if !fields.list("valuesFrom")?.is_empty() {
        return Err(fields.error(
            &fields.path("valuesFrom"),
            "reads values from ConfigMaps and Secrets on each downstream cluster, which flotilla \
             cannot do (it renders once, on the server): move those values into values or \
             valuesFiles",
        ));
    }
    let values = match fields.node("values").map(|node| node.loose) {
        Some(Value::Object(map)) => map.clone(),
        Some(other) => {
            return Err(fields.error(
                &fields.path("values"),
                &format!("must be a mapping but is {}", type_name(other)),
            ));
        }
        None => Map::new(),
    };
    Ok(HelmOptions {
        chart: fields.string("chart")?,
        repo: fields.string("repo")?,
        version: fields.string("version")?,
        release_name: fields.string("releaseName")?,
        values,
        values_files: fields.string_list("valuesFiles")?,
        disable_pre_process: fields.bool("disablePreProcess")?,
        disable_dependency_update: fields.bool("disableDependencyUpdate")?,
        skip_schema_validation: fields.bool("skipSchemaValidation")?,
    })
}

/// A `diff.comparePatches` entry as drift-ignore paths: the `remove` operations' paths and the
/// `jsonPointers`. Its `namespace` cannot be expressed in flotilla and widens to every namespace.
fn compare_patch(file: &str, value: Node<'_>, path: &str) -> Result<DriftIgnore, RenderError> {
    let fields = Fields::new(
        file,
        value,
        path,
        &[
            "apiVersion",
            "kind",
            "name",
            "namespace",
            "operations",
            "jsonPointers",
        ],
        &[],
    )?;
    let mut paths = Vec::new();
    for (index, operation) in fields.list("operations")?.into_iter().enumerate() {
        let op_path = format!("{path}.operations[{index}]");
        let op = Fields::new(file, operation, &op_path, &["op", "path", "value"], &[])?;
        match op.string("op")?.as_deref() {
            Some("remove") => {}
            other => {
                return Err(op.error(
                    &op.path("op"),
                    &format!(
                        "is {}; flotilla ignores drift only with \"remove\" operations",
                        other.map_or("missing".to_string(), |op| format!("{op:?}"))
                    ),
                ));
            }
        }
        let pointer = op
            .string("path")?
            .ok_or_else(|| op.error(&op.path("path"), "is missing"))?;
        paths.push(pointer);
    }
    paths.extend(fields.string_list("jsonPointers")?);
    for (index, pointer) in paths.iter().enumerate() {
        if let Err(error) = flotilla_core::documents::field_pointer(pointer) {
            return Err(fields.error(
                path,
                &format!(
                    "path {index} ({pointer:?}) is not a JSON pointer to a field ({error}); write it like /spec/replicas"
                ),
            ));
        }
    }
    Ok(DriftIgnore {
        api_version: fields.string("apiVersion")?,
        kind: fields.string("kind")?,
        name: fields.string("name")?,
        paths,
    })
}

pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// A node of fleet.yaml in both parses: `strict` (YAML 1.2 booleans) and `loose` (YAML 1.1).
#[derive(Clone, Copy)]
struct Node<'a> {
    strict: &'a Value,
    loose: &'a Value,
}

impl<'a> Node<'a> {
    fn new(strict: &'a Value, loose: &'a Value) -> Node<'a> {
        Node { strict, loose }
    }
}

static NULL: Value = Value::Null;

/// A fleet.yaml mapping whose keys have been checked, with typed getters whose errors name the
/// file and the key's path.
struct Fields<'a> {
    file: &'a str,
    path: String,
    map: &'a Map<String, Value>,
    loose: Option<&'a Map<String, Value>>,
}

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

impl<'a> Fields<'a> {
    /// Checks that `node` is a mapping (null counts as empty) whose keys are all `used` or
    /// `ignored` ones.
    fn new(
        file: &'a str,
        node: Node<'a>,
        path: &str,
        used: &[&str],
        ignored: &[&str],
    ) -> Result<Fields<'a>, RenderError> {
        let map = match node.strict {
            Value::Null => &*EMPTY,
            Value::Object(map) => map,
            other => {
                let at = if path.is_empty() {
                    "the document"
                } else {
                    path
                };
                return Err(RenderError::in_file(
                    file,
                    format!("{at} must be a mapping but is {}", type_name(other)),
                ));
            }
        };
        if let Some(key) = map
            .keys()
            .find(|key| !used.contains(&key.as_str()) && !ignored.contains(&key.as_str()))
        {
            let at = if path.is_empty() {
                String::new()
            } else {
                format!(" in {path}")
            };
            return Err(RenderError::in_file(
                file,
                format!(
                    "unknown key {key:?}{at}: Fleet's fleet.yaml has no such key (known here: {})",
                    used.iter()
                        .filter(|known| **known != "clusterGroupSelector")
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        Ok(Fields {
            file,
            path: path.to_string(),
            map,
            loose: node.loose.as_object(),
        })
    }

    fn path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn error(&self, path: &str, problem: &str) -> RenderError {
        RenderError::in_file(self.file, format!("{path} {problem}"))
    }

    /// The value at `key` (YAML 1.2 reading), `None` when absent or null.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|value| !value.is_null())
    }

    /// The value at `key` in both readings, `None` when absent or null.
    fn node(&self, key: &str) -> Option<Node<'a>> {
        let strict = self.get(key)?;
        let loose = self.loose.and_then(|map| map.get(key)).unwrap_or(&NULL);
        Some(Node::new(strict, loose))
    }

    fn wrong_type(&self, key: &str, expected: &str, found: &Value) -> RenderError {
        self.error(
            &self.path(key),
            &format!("must be {expected} but is {}", type_name(found)),
        )
    }

    /// A string; a number is taken as its text (a string field reads `name: 42` as "42").
    fn string(&self, key: &str) -> Result<Option<String>, RenderError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(text)) if text.is_empty() => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(Value::Number(number)) => Ok(Some(number.to_string())),
            Some(other) => Err(self.wrong_type(key, "a string", other)),
        }
    }

    /// A boolean; YAML 1.1 spellings (`yes`, `on`) count, as in Fleet.
    fn bool(&self, key: &str) -> Result<bool, RenderError> {
        match self.node(key) {
            None => Ok(false),
            Some(Node {
                strict: Value::Bool(value),
                ..
            })
            | Some(Node {
                loose: Value::Bool(value),
                ..
            }) => Ok(*value),
            Some(node) => Err(self.wrong_type(key, "true or false", node.strict)),
        }
    }

    /// The items of a list, in both readings.
    fn list(&self, key: &str) -> Result<Vec<Node<'a>>, RenderError> {
        let Some(node) = self.node(key) else {
            return Ok(Vec::new());
        };
        let Value::Array(items) = node.strict else {
            return Err(self.wrong_type(key, "a list", node.strict));
        };
        let loose = node.loose.as_array();
        Ok(items
            .iter()
            .enumerate()
            .map(|(index, item)| Node::new(item, loose.and_then(|l| l.get(index)).unwrap_or(&NULL)))
            .collect())
    }

    fn string_list(&self, key: &str) -> Result<Vec<String>, RenderError> {
        self.list(key)?
            .into_iter()
            .enumerate()
            .map(|(index, item)| match item.strict {
                Value::String(text) => Ok(text.clone()),
                Value::Number(number) => Ok(number.to_string()),
                other => Err(self.error(
                    &format!("{}[{index}]", self.path(key)),
                    &format!("must be a string but is {}", type_name(other)),
                )),
            })
            .collect()
    }

    fn string_map(&self, key: &str) -> Result<BTreeMap<String, String>, RenderError> {
        match self.get(key) {
            None => Ok(BTreeMap::new()),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(name, value)| match value {
                    Value::String(text) => Ok((name.clone(), text.clone())),
                    other => Err(self.error(
                        &format!("{}.{name}", self.path(key)),
                        &format!("must be a string but is {} (quote it)", type_name(other)),
                    )),
                })
                .collect(),
            Some(other) => Err(self.wrong_type(key, "a mapping", other)),
        }
    }

    /// A count or a percentage (`5`, `"5"`, `10%`, `12.5%`), as Fleet's `IntOrString` limits.
    fn amount(&self, key: &str) -> Result<Option<Amount>, RenderError> {
        let value = match self.get(key) {
            None => return Ok(None),
            Some(Value::Number(number)) => match number.as_u64() {
                Some(count) => IntOrPercent::Int(count),
                None => {
                    return Err(self.error(
                        &self.path(key),
                        &format!(
                            "is {number}; give a count of 0 or more or a percentage such as 10%"
                        ),
                    ));
                }
            },
            // Fleet reads a quoted number as that count.
            Some(Value::String(text)) => match text.trim().parse::<u64>() {
                Ok(count) => IntOrPercent::Int(count),
                Err(_) => IntOrPercent::Percent(text.clone()),
            },
            Some(other) => return Err(self.wrong_type(key, "a count or a percentage", other)),
        };
        strategy::amount(&value)
            .map(Some)
            .map_err(|error| self.error(&format!("{}:", self.path(key)), &error))
    }

    /// A label selector, checked with Kubernetes' rules. `{}` selects everything.
    fn selector(&self, key: &str) -> Result<Option<LabelSelector>, RenderError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let selector: LabelSelector = serde_json::from_value(value.clone()).map_err(|error| {
            self.error(
                &self.path(key),
                &format!("is not a label selector: {error}"),
            )
        })?;
        flotilla_core::selector::Selector::from_api(&selector)
            .map_err(|error| self.error(&self.path(key), &format!("is invalid: {error}")))?;
        Ok(Some(selector))
    }
}
