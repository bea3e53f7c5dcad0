//! The `-o` values: `Format` for the commands that print one kind of document (rollout status,
//! history, render), `Output` for `get`, which adds kubectl's `wide`, `name` and `jsonpath=`.

use super::jsonpath::Template;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// How `get` prints what it read.
#[derive(Debug, Clone)]
pub enum Output {
    Table,
    /// The table with more columns per kind (labels, digests, ages).
    Wide,
    Json,
    Yaml,
    /// `kind/name`, one line per object.
    Name,
    /// A kubectl JSONPath template over the document (one object) or `{"items": [...]}`.
    JsonPath(Template),
}

/// The `-o` values as the help lists them; `Output::parse` accepts exactly these (a test parses
/// each), so the help cannot promise what the parser refuses.
pub const OUTPUT_VALUES: [&str; 6] = ["table", "wide", "json", "yaml", "name", "jsonpath=TEMPLATE"];

impl Output {
    /// The help line of `-o`, listing [`OUTPUT_VALUES`].
    pub fn help() -> String {
        format!(
            "Output format: {} (e.g. jsonpath='{{.items[*].metadata.name}}')",
            OUTPUT_VALUES.join(", ")
        )
    }

    /// Parses an `-o` value (a clap value parser).
    pub fn parse(text: &str) -> Result<Output, String> {
        if let Some(template) = text.strip_prefix("jsonpath=") {
            return Template::parse(template).map(Output::JsonPath);
        }
        match text {
            "table" => Ok(Output::Table),
            "wide" => Ok(Output::Wide),
            "json" => Ok(Output::Json),
            "yaml" => Ok(Output::Yaml),
            "name" => Ok(Output::Name),
            "jsonpath" => Err("jsonpath needs a template: -o jsonpath='{.metadata.name}'".into()),
            other => Err(format!(
                "unknown output format {other:?}; use {}",
                OUTPUT_VALUES.join(", ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_output_value_the_help_lists_parses() {
        let help = Output::help();
        for value in OUTPUT_VALUES {
            assert!(help.contains(value), "{help}");
            let value = value.replace("TEMPLATE", "{.metadata.name}");
            assert!(Output::parse(&value).is_ok(), "{value} is refused");
        }
        let refused = Output::parse("xml").unwrap_err();
        assert!(refused.contains("jsonpath=TEMPLATE"), "{refused}");
        assert!(Output::parse("jsonpath").is_err());
        assert!(Output::parse("jsonpath={.a").is_err());
    }
}
