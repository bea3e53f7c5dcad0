//! `flotilla explain KIND[.field…]`: a kind's fields, their types and documentation, as
//! kubectl explain, read from the OpenAPI schemas the API types derive.
//!
//! The schemas come from the document compiled into this binary (the server's own builder,
//! `flotilla_server::api::openapi::openapi`), not from a running server: it is the document
//! the server serves at `/api/v1/openapi.json` for the same build, and it works offline.

use std::fmt::Write as _;

use anyhow::{Context, bail};
use clap::Args;
use flotilla_api::API_VERSION;
use serde_json::{Map, Value};

use crate::{args::parse_kind, output};

#[derive(Args)]
pub struct ExplainArgs {
    /// A kind and an optional field path: `bundle`, `bundle.spec.rollout.waves`.
    path: String,
    /// Show every field below, nested, with its type (no descriptions).
    #[arg(long)]
    recursive: bool,
}

pub fn run(args: ExplainArgs) -> anyhow::Result<()> {
    let ExplainArgs { path, recursive } = args;
    let document = serde_json::to_value(flotilla_server::api::openapi::openapi())
        .context("render the OpenAPI document")?;
    let schemas = document
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .context("the OpenAPI document has no schemas")?;
    output::out(&explain(schemas, &path, Depth::from(recursive))?)
}

/// How much of the tree below the field to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Depth {
    /// Its direct fields, each with its description.
    Fields,
    /// Every field below, nested, with types only.
    Recursive,
}

impl From<bool> for Depth {
    fn from(recursive: bool) -> Depth {
        if recursive {
            Depth::Recursive
        } else {
            Depth::Fields
        }
    }
}

/// How deep `--recursive` goes: deeper than any flotilla type nests, and a stop for schemas
/// that refer to themselves.
const MAX_DEPTH: usize = 12;

/// `#/components/schemas/` references resolved against the document's schemas.
struct Schemas<'a>(&'a Map<String, Value>);

/// One field of an object schema.
struct Field<'a> {
    name: &'a str,
    schema: &'a Value,
    required: bool,
}

const REF_PREFIX: &str = "#/components/schemas/";

impl<'a> Schemas<'a> {
    fn named(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name)
    }

    /// The schema a `$ref` names, if `schema` is one.
    fn referenced(&self, schema: &'a Value) -> Option<(&'a str, &'a Value)> {
        let name = schema.get("$ref")?.as_str()?.strip_prefix(REF_PREFIX)?;
        Some((name, self.named(name)?))
    }

    /// The schema behind references, `oneOf: [X, null]` (an optional field) and a one-item
    /// `allOf`.
    fn resolve(&self, mut schema: &'a Value) -> &'a Value {
        for _ in 0..MAX_DEPTH {
            if let Some((_, target)) = self.referenced(schema) {
                schema = target;
            } else if let Some(inner) = nullable_inner(schema) {
                schema = inner;
            } else if let Some([only]) = schema
                .get("allOf")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
            {
                schema = only;
            } else {
                break;
            }
        }
        schema
    }

    /// What a field's own fields are read from: an array's items, a map's values, else the
    /// field's schema itself.
    fn element(&self, schema: &'a Value) -> &'a Value {
        let mut schema = self.resolve(schema);
        for _ in 0..MAX_DEPTH {
            if let Some(items) = schema.get("items") {
                schema = self.resolve(items);
            } else if let Some(values) = map_values(schema) {
                schema = self.resolve(values);
            } else {
                break;
            }
        }
        schema
    }

    /// An object schema's fields in name order, `allOf` parts merged (a flattened struct).
    fn fields(&self, schema: &'a Value) -> Vec<Field<'a>> {
        let schema = self.resolve(schema);
        let mut fields = Vec::new();
        if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
            for part in parts {
                fields.extend(self.fields(part));
            }
        }
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (name, schema) in properties {
                fields.push(Field {
                    name,
                    schema,
                    required: required.contains(&name.as_str()),
                });
            }
        }
        fields.sort_by(|a, b| a.name.cmp(b.name));
        fields
    }

    /// The type as kubectl explain writes it: `string`, `[]BundleTarget`,
    /// `map[string]string`, a named object's name, `Object`.
    fn type_name(&self, schema: &'a Value) -> String {
        if let Some((name, target)) = self.referenced(schema) {
            return if is_object(target) {
                name.to_string()
            } else {
                self.type_name(target)
            };
        }
        if let Some(inner) = nullable_inner(schema) {
            return self.type_name(inner);
        }
        for combinator in ["allOf", "oneOf", "anyOf"] {
            if let Some(parts) = schema.get(combinator).and_then(Value::as_array) {
                return match (combinator, parts.as_slice()) {
                    (_, [only]) => self.type_name(only),
                    ("allOf", _) => "Object".into(),
                    _ => parts
                        .iter()
                        .map(|part| self.type_name(part))
                        .collect::<Vec<_>>()
                        .join("|"),
                };
            }
        }
        match json_type(schema) {
            Some("array") => match schema.get("items") {
                Some(items) => format!("[]{}", self.type_name(items)),
                None => "[]Object".into(),
            },
            Some("object") | None => match map_values(schema) {
                Some(values) => format!("map[string]{}", self.type_name(values)),
                None => "Object".into(),
            },
            Some(other) => other.to_string(),
        }
    }

    /// A field's documentation: its own, else its optional form's, else the referenced
    /// type's; and the values an enum allows.
    fn description(&self, schema: &'a Value) -> String {
        let own = [Some(schema), nullable_inner(schema)]
            .into_iter()
            .flatten()
            .find_map(|schema| schema.get("description").and_then(Value::as_str));
        let text = own
            .or_else(|| {
                self.resolve(schema)
                    .get("description")
                    .and_then(Value::as_str)
            })
            .unwrap_or("<no description>");
        let values: Vec<String> = self
            .resolve(schema)
            .get("enum")
            .and_then(Value::as_array)
            .map(|values| {
                values
                    .iter()
                    .map(|value| match value {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        if values.is_empty() {
            text.to_string()
        } else {
            format!("{text}\n\nPossible values: {}", values.join(", "))
        }
    }
}

/// `X` of `oneOf: [X, {type: null}]`, the schema utoipa writes for an optional field.
fn nullable_inner(schema: &Value) -> Option<&Value> {
    let parts = schema.get("oneOf")?.as_array()?;
    let mut not_null = parts.iter().filter(|part| json_type(part) != Some("null"));
    let inner = not_null.next()?;
    (parts.len() == 2 && not_null.next().is_none()).then_some(inner)
}

/// The schema's `type`, the non-null one of `["string", "null"]`.
fn json_type(schema: &Value) -> Option<&str> {
    match schema.get("type")? {
        Value::String(name) => Some(name),
        Value::Array(names) => names
            .iter()
            .filter_map(Value::as_str)
            .find(|name| *name != "null"),
        _ => None,
    }
}

/// The value schema of a map (`additionalProperties` with no named properties).
fn map_values(schema: &Value) -> Option<&Value> {
    if schema.get("properties").is_some() {
        return None;
    }
    schema
        .get("additionalProperties")
        .filter(|values| values.is_object())
}

/// Whether a named schema is a structure with fields (written by its name), not a string enum
/// or a scalar.
fn is_object(schema: &Value) -> bool {
    schema.get("properties").is_some()
        || schema.get("allOf").is_some()
        || (json_type(schema) == Some("object") && map_values(schema).is_none())
}

/// The explanation of `path` (`KIND[.field…]`).
fn explain(schemas: &Map<String, Value>, path: &str, depth: Depth) -> anyhow::Result<String> {
    let schemas = Schemas(schemas);
    let mut segments = path.split('.');
    let kind_text = segments.next().unwrap_or_default();
    let kind = parse_kind(kind_text)?;
    let root = schemas
        .named(kind.as_str())
        .with_context(|| format!("the OpenAPI document has no schema for {kind}"))?;
    let mut walked = kind.as_str().to_string();
    let mut schema = root;
    let mut field_name = None;
    for segment in segments {
        let fields = schemas.fields(schemas.element(schema));
        let Some(field) = fields.iter().find(|field| field.name == segment) else {
            bail!("{}", unknown_field(&walked, segment, &fields));
        };
        schema = field.schema;
        field_name = Some(field.name);
        walked = format!("{walked}.{segment}");
    }

    let mut text = String::new();
    writeln!(text, "KIND:       {kind}")?;
    writeln!(text, "VERSION:    {API_VERSION}")?;
    writeln!(text)?;
    if let Some(name) = field_name {
        writeln!(text, "FIELD: {name} <{}>", schemas.type_name(schema))?;
        writeln!(text)?;
    }
    writeln!(text, "DESCRIPTION:")?;
    write_indented(&mut text, &schemas.description(schema), 4)?;
    let fields = schemas.fields(schemas.element(schema));
    if !fields.is_empty() {
        writeln!(text)?;
        writeln!(text, "FIELDS:")?;
        match depth {
            Depth::Fields => {
                for field in &fields {
                    write_field_line(&mut text, &schemas, field, 2)?;
                    write_indented(&mut text, &schemas.description(field.schema), 4)?;
                    writeln!(text)?;
                }
            }
            Depth::Recursive => {
                let mut seen = Vec::new();
                write_tree(&mut text, &schemas, &fields, 2, &mut seen)?;
            }
        }
    }
    Ok(text)
}

fn write_field_line(
    text: &mut String,
    schemas: &Schemas,
    field: &Field,
    indent: usize,
) -> std::fmt::Result {
    let required = if field.required { " -required-" } else { "" };
    writeln!(
        text,
        "{:indent$}{}\t<{}>{required}",
        "",
        field.name,
        schemas.type_name(field.schema)
    )
}

/// The fields below, nested by indentation; a named type already open on the way down is not
/// opened again (a schema that refers to itself).
fn write_tree<'a>(
    text: &mut String,
    schemas: &Schemas<'a>,
    fields: &[Field<'a>],
    indent: usize,
    open: &mut Vec<&'a Value>,
) -> std::fmt::Result {
    for field in fields {
        write_field_line(text, schemas, field, indent)?;
        let element = schemas.element(field.schema);
        if open.iter().any(|opened| std::ptr::eq(*opened, element)) || open.len() >= MAX_DEPTH {
            continue;
        }
        open.push(element);
        write_tree(text, schemas, &schemas.fields(element), indent + 2, open)?;
        open.pop();
    }
    Ok(())
}

fn write_indented(text: &mut String, paragraph: &str, indent: usize) -> std::fmt::Result {
    for line in paragraph.lines() {
        if line.trim().is_empty() {
            writeln!(text)?;
        } else {
            writeln!(text, "{:indent$}{line}", "")?;
        }
    }
    Ok(())
}

/// The error for a field that does not exist: the closest name (a few edits away, as kubectl
/// suggests), and every name there is.
fn unknown_field(walked: &str, segment: &str, fields: &[Field]) -> String {
    if fields.is_empty() {
        return format!("field {segment:?} does not exist: {walked} has no fields");
    }
    let names: Vec<&str> = fields.iter().map(|field| field.name).collect();
    let closest = names
        .iter()
        .map(|name| {
            (
                strsim::damerau_levenshtein(&segment.to_lowercase(), &name.to_lowercase()),
                *name,
            )
        })
        .filter(|(distance, name)| *distance <= (name.len() / 3).max(2))
        .min();
    let suggestion = match closest {
        Some((_, name)) => format!("; did you mean {name:?}?"),
        None => String::new(),
    };
    format!(
        "field {segment:?} does not exist in {walked}{suggestion} Its fields: {}",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> Value {
        serde_json::to_value(flotilla_server::api::openapi::openapi()).unwrap()
    }

    fn explained(path: &str, depth: Depth) -> anyhow::Result<String> {
        let document = document();
        explain(
            document["components"]["schemas"].as_object().unwrap(),
            path,
            depth,
        )
    }

    #[test]
    fn types_are_written_as_kubectl_writes_them() {
        let text = explained("bundle.spec", Depth::Fields).unwrap();
        assert!(text.contains("FIELD: spec <BundleSpec>"), "{text}");
        assert!(text.contains("targets\t<[]BundleTarget>"), "{text}");
        assert!(text.contains("rollout\t<RolloutStrategy>"), "{text}");
        assert!(text.contains("paused\t<boolean>"), "{text}");
        let meta = explained("cluster.metadata", Depth::Fields).unwrap();
        assert!(meta.contains("labels\t<map[string]string>"), "{meta}");
    }

    #[test]
    fn an_optional_field_keeps_the_description_written_on_it() {
        let text = explained("bundle.spec.rollout", Depth::Fields).unwrap();
        assert!(text.contains("How changes reach the fleet"), "{text}");
    }

    #[test]
    fn a_flattened_struct_shows_the_fields_of_all_its_parts() {
        let text = explained("cluster.status", Depth::Fields).unwrap();
        assert!(text.contains("lastSeen\t"), "{text}");
        assert!(text.contains("kubernetesVersion\t"), "{text}");
    }

    #[test]
    fn an_unknown_field_names_the_closest_and_lists_the_rest() {
        let error = explained("bundle.spec.pasued", Depth::Fields).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("did you mean \"paused\""), "{message}");
        assert!(message.contains("targets"), "{message}");
        let error = explained("bundle.spec.paused.deeper", Depth::Fields).unwrap_err();
        assert!(error.to_string().contains("has no fields"), "{error}");
    }

    #[test]
    fn recursive_nests_every_field_and_ends() {
        let text = explained("bundle", Depth::Recursive).unwrap();
        assert!(text.contains("\n    targets\t<[]BundleTarget>"), "{text}");
        assert!(
            text.contains("\n      clusterSelector\t<LabelSelector>"),
            "{text}"
        );
        assert!(!text.contains("<no description>\n    targets"), "{text}");
    }
}
