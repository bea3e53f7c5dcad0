//! Reading documents for `flotilla apply -f`: files, folders (recursively, `.yaml`, `.yml`,
//! `.json`), or standard input; YAML streams split into documents.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use serde_json::Value;

/// A document and where it came from (for messages).
pub struct Document {
    pub source: String,
    pub value: Value,
}

impl Document {
    /// `kind/name` in lower case as kubectl prints it (`bundle/web`); `?` for what is missing.
    pub fn kind_and_name(&self) -> String {
        let text = |value: Option<&Value>| value.and_then(Value::as_str).unwrap_or("?").to_string();
        let kind = text(self.value.get("kind"));
        let name = text(self.value.get("metadata").and_then(|meta| meta.get("name")));
        format!("{}/{name}", kind.to_ascii_lowercase())
    }
}

pub fn read(path: &str) -> anyhow::Result<Vec<Document>> {
    if path == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("read standard input")?;
        return parse("<stdin>", &text);
    }
    let path = Path::new(path);
    let mut files = Vec::new();
    collect(path, &mut files)?;
    if files.is_empty() {
        bail!("{} holds no .yaml, .yml or .json files", path.display());
    }
    let mut documents = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(&file).with_context(|| format!("read {}", file.display()))?;
        documents.extend(parse(&file.display().to_string(), &text)?);
    }
    Ok(documents)
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let metadata = std::fs::metadata(path).with_context(|| format!("read {}", path.display()))?;
    if metadata.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("list {}", path.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            if entry.is_dir() {
                collect(&entry, files)?;
            } else if matches!(
                entry.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            ) {
                files.push(entry);
            }
        }
    } else {
        files.push(path.to_path_buf());
    }
    Ok(())
}

/// Parses one file's text: a JSON document, or a stream of YAML documents (empty ones skipped).
pub fn parse(source: &str, text: &str) -> anyhow::Result<Vec<Document>> {
    if text.trim_start().starts_with('{') {
        let value: Value =
            serde_json::from_str(text).with_context(|| format!("{source}: malformed JSON"))?;
        return Ok(vec![Document {
            source: source.to_string(),
            value,
        }]);
    }
    let values: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| anyhow::anyhow!("{source}: malformed YAML: {e}"))?;
    Ok(values
        .into_iter()
        .filter(|v| !v.is_null())
        .enumerate()
        .map(|(index, value)| Document {
            source: format!("{source}#{}", index + 1),
            value,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_streams_split_into_documents_and_skip_empty_ones() {
        let documents = parse("x", "a: 1\n---\n---\nb: 2\n").unwrap();
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[1].value["b"], 2);
    }

    #[test]
    fn a_document_is_named_by_its_lower_case_kind_and_name() {
        let documents = parse(
            "x",
            "kind: Bundle\nmetadata: {name: web}\n---\nkind: Secret\n",
        )
        .unwrap();
        assert_eq!(documents[0].kind_and_name(), "bundle/web");
        assert_eq!(documents[1].kind_and_name(), "secret/?");
    }

    #[test]
    fn malformed_yaml_names_the_source() {
        let error = parse("bundle.yaml", "a: [1, 2\n")
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("bundle.yaml"), "{error}");
    }
}
