//! A small JSON Schema walker over the served document's `components.schemas`: `$ref`, `allOf`,
//! `oneOf`, `type`, `enum`, `properties`, `required`, `additionalProperties` and `items`, and
//! which properties a document used (to find schema properties nothing serializes).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

const SCHEMA_PREFIX: &str = "#/components/schemas/";

pub struct Schemas<'a> {
    pub named: &'a Map<String, Value>,
}

/// A property of a named schema: (schema name, property name).
pub type Property = (String, String);

impl<'a> Schemas<'a> {
    pub fn of(document: &'a Value) -> Schemas<'a> {
        Schemas {
            named: document["components"]["schemas"]
                .as_object()
                .expect("components.schemas"),
        }
    }

    fn named(&self, name: &str) -> &'a Value {
        self.named
            .get(name)
            .unwrap_or_else(|| panic!("no schema named {name}"))
    }

    /// Asserts that `value` matches the schema `name`; adds the properties it used to `covered`.
    pub fn assert_matches(&self, name: &str, value: &Value, covered: &mut BTreeSet<Property>) {
        let mut errors = Vec::new();
        self.check(self.named(name), name, value, name, covered, &mut errors);
        assert!(
            errors.is_empty(),
            "{name} does not match its schema:\n{}\nin {value:#}",
            errors.join("\n")
        );
    }

    /// Records in `errors` where `value` (at `at`) breaks `schema` (a part of the named schema
    /// `owner`), and in `covered` the properties it used.
    fn check(
        &self,
        schema: &'a Value,
        owner: &str,
        value: &Value,
        at: &str,
        covered: &mut BTreeSet<Property>,
        errors: &mut Vec<String>,
    ) {
        if let Some(name) = ref_name(schema) {
            return self.check(self.named(name), name, value, at, covered, errors);
        }
        if let Some(branches) = schema["oneOf"].as_array() {
            let mut failures = Vec::new();
            for branch in branches {
                let (mut branch_covered, mut branch_errors) = (BTreeSet::new(), Vec::new());
                self.check(
                    branch,
                    owner,
                    value,
                    at,
                    &mut branch_covered,
                    &mut branch_errors,
                );
                if branch_errors.is_empty() {
                    covered.extend(branch_covered);
                    return;
                }
                failures.push(branch_errors.join("; "));
            }
            errors.push(format!("{at}: matches no oneOf branch: {failures:?}"));
            return;
        }
        if let Some(types) = types(schema)
            && !types.iter().any(|name| has_type(value, name))
        {
            errors.push(format!("{at}: {value} is not of type {types:?}"));
            return;
        }
        if let Some(allowed) = schema["enum"].as_array()
            && !allowed.contains(value)
        {
            errors.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
        match value {
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (index, item) in items.iter().enumerate() {
                        let at = format!("{at}[{index}]");
                        self.check(item_schema, owner, item, &at, covered, errors);
                    }
                }
            }
            Value::Object(object) => self.check_object(schema, owner, object, at, covered, errors),
            _ => {}
        }
    }

    fn check_object(
        &self,
        schema: &'a Value,
        owner: &str,
        object: &Map<String, Value>,
        at: &str,
        covered: &mut BTreeSet<Property>,
        errors: &mut Vec<String>,
    ) {
        let shape = self.shape(schema, owner);
        if shape.free_form {
            return; // `{}`: any JSON (manifests, patches)
        }
        for (key, value) in object {
            let at = format!("{at}.{key}");
            if let Some((property_owner, property)) = shape.properties.get(key.as_str()) {
                covered.insert((property_owner.clone(), key.clone()));
                self.check(property, property_owner, value, &at, covered, errors);
            } else if let Some(values) = shape.additional.filter(|values| values.is_object()) {
                self.check(values, owner, value, &at, covered, errors);
            } else {
                errors.push(format!("{at}: not a property of {owner}'s schema"));
            }
        }
        for required in shape.required {
            if !object.contains_key(&required) {
                errors.push(format!("{at}: required {required:?} is missing"));
            }
        }
    }

    /// The properties, required keys and map values of an object schema, `allOf` parts merged.
    fn shape(&self, schema: &'a Value, owner: &str) -> Shape<'a> {
        let mut shape = Shape {
            properties: BTreeMap::new(),
            required: Vec::new(),
            additional: schema.get("additionalProperties"),
            free_form: schema.get("properties").is_none()
                && schema.get("allOf").is_none()
                && schema.get("additionalProperties").is_none(),
        };
        if let Some(properties) = schema["properties"].as_object() {
            for (name, property) in properties {
                shape
                    .properties
                    .insert(name.as_str(), (owner.to_owned(), property));
            }
        }
        if let Some(required) = schema["required"].as_array() {
            shape.required.extend(
                required
                    .iter()
                    .map(|name| name.as_str().expect("name").to_owned()),
            );
        }
        for part in schema["allOf"].as_array().into_iter().flatten() {
            let (part_owner, part) = match ref_name(part) {
                Some(name) => (name, self.named(name)),
                None => (owner, part),
            };
            let part = self.shape(part, part_owner);
            shape.properties.extend(part.properties);
            shape.required.extend(part.required);
        }
        shape
    }

    /// Every property of the named schema and of the schemas it refers to, transitively.
    pub fn reachable_properties(&self, name: &str) -> BTreeSet<Property> {
        let mut names = BTreeSet::new();
        let mut pending = vec![name.to_owned()];
        while let Some(name) = pending.pop() {
            if names.insert(name.clone()) {
                let mut refs = BTreeSet::new();
                collect_refs(self.named(&name), &mut refs);
                pending.extend(refs);
            }
        }
        names
            .iter()
            .flat_map(|name| {
                let shape = self.shape(self.named(name), name);
                shape
                    .properties
                    .into_iter()
                    .map(|(property, (owner, _))| (owner, property.to_owned()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

struct Shape<'a> {
    /// Property name → (the named schema declaring it, its schema).
    properties: BTreeMap<&'a str, (String, &'a Value)>,
    required: Vec<String>,
    additional: Option<&'a Value>,
    free_form: bool,
}

fn ref_name(schema: &Value) -> Option<&str> {
    let reference = schema.get("$ref")?.as_str()?;
    Some(
        reference
            .strip_prefix(SCHEMA_PREFIX)
            .unwrap_or_else(|| panic!("a $ref outside the schemas: {reference}")),
    )
}

pub fn collect_refs(value: &Value, names: &mut BTreeSet<String>) {
    match value {
        Value::Object(object) => {
            if let Some(name) = ref_name(value) {
                names.insert(name.to_owned());
            }
            if let Some(mapping) = object
                .get("discriminator")
                .and_then(|d| d["mapping"].as_object())
            {
                for target in mapping.values() {
                    let target = target.as_str().expect("mapping target");
                    names.insert(target.strip_prefix(SCHEMA_PREFIX).unwrap_or(target).into());
                }
            }
            object.values().for_each(|v| collect_refs(v, names));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, names)),
        _ => {}
    }
}

fn types(schema: &Value) -> Option<Vec<&str>> {
    match &schema["type"] {
        Value::String(name) => Some(vec![name.as_str()]),
        Value::Array(names) => Some(names.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

fn has_type(value: &Value, name: &str) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        other => panic!("unknown JSON Schema type {other}"),
    }
}
