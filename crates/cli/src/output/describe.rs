//! The `describe` view: identity, labels, the kind's key facts, then status and spec as YAML.

use serde_json::Value;

use super::{
    cells::{labels, text},
    colour::Colouring,
    kinds::Printable,
    serial::{out, to_json},
};

/// Width of the keys in `describe` (`Observed generation:  `).
const KEY_WIDTH: usize = 22;

/// A human-readable description: identity, labels, the kind's key facts, then spec and status.
pub fn describe<K: Printable>(item: &K) -> anyhow::Result<()> {
    out(&describe_text(item, Colouring::for_stdout())?)
}

fn describe_text<K: Printable>(item: &K, colouring: Colouring) -> anyhow::Result<String> {
    let metadata = item.metadata();
    let mut text = String::new();
    let mut line = |key: &str, value: String| {
        if !value.is_empty() {
            text.push_str(&format!("{:<KEY_WIDTH$}{value}\n", format!("{key}:")));
        }
    };
    line("Name", metadata.name.clone());
    line("Kind", K::KIND.to_string());
    line("Labels", labels(&metadata.labels));
    line(
        "Created",
        self::text(metadata.creation_timestamp.as_deref()),
    );
    // Generation 0 (never written) is not on the wire: nothing to show.
    line(
        "Generation",
        self::text(Some(metadata.generation).filter(|generation| *generation != 0)),
    );
    for (key, value) in item.facts() {
        let value = if key == "State" {
            colouring.state(&value)
        } else {
            value
        };
        line(key, value);
    }
    let mut section = |title: &str, value: &Value| -> anyhow::Result<()> {
        text.push_str(title);
        text.push_str(":\n");
        for line in serde_saphyr::to_string(value)?.lines() {
            text.push_str("  ");
            text.push_str(line);
            text.push('\n');
        }
        Ok(())
    };
    if let Some(status) = item.status() {
        section("Status", &to_json(status)?)?;
    }
    if K::DESCRIBE_SPEC {
        section("Spec", &to_json(item.spec())?)?;
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use flotilla_api::{Bundle, BundleSpec, BundleStatus};
    use flotilla_client::Resource;

    use super::*;

    #[test]
    fn describe_lists_identity_then_facts_then_status_and_spec() {
        let mut bundle = Bundle::new("web", BundleSpec::default());
        bundle.metadata.generation = 2;
        bundle.status = Some(BundleStatus {
            state: "Ready".into(),
            ..BundleStatus::default()
        });
        let text = describe_text(&bundle, Colouring::Off).unwrap();
        assert!(
            text.starts_with(
                "Name:                 web\nKind:                 Bundle\nGeneration:           2\nState:                Ready\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("\nStatus:\n") && text.contains("\nSpec:\n"),
            "{text}"
        );
        let coloured = describe_text(&bundle, Colouring::On).unwrap();
        assert!(coloured.contains("\u{1b}[32mReady"), "{coloured}");
    }
}
