//! kubectl's JSONPath templates (`-o jsonpath=…`): literal text and `{…}` actions: a query
//! (`{.metadata.name}`, `{.items[*].metadata.name}`), a quoted string (`{"\n"}`) or a loop
//! (`{range .items[*]}…{end}`). A thin layer: each query is rewritten into RFC 9535 form and
//! evaluated by `jsonpath-rust` (the crate kube uses for kubeconfig templates); only the
//! template syntax around the queries is ours.

use jsonpath_rust::{parser::model::JpQuery, query::js_path_process};
use serde_json::Value;

/// A parsed template, ready to render against documents.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Query(Query),
    /// `{range QUERY}BODY{end}`: the body once per result, with that result as the current
    /// object.
    Range {
        query: Query,
        body: Vec<Node>,
    },
}

#[derive(Debug, Clone)]
struct Query {
    /// `$…` starts at the whole document; `.…` and `@…` at the current object (which is the
    /// document outside any `range`).
    from_root: bool,
    compiled: JpQuery,
}

impl Template {
    /// Parses a template; the error names what is wrong (a clap value parser's message).
    pub fn parse(template: &str) -> Result<Template, String> {
        // Each open `range` collects its body here until its `end`.
        let mut stack: Vec<(Option<Query>, Vec<Node>)> = vec![(None, Vec::new())];
        for piece in pieces(template)? {
            let action = match piece {
                Piece::Text(text) => {
                    push(&mut stack, Node::Text(text));
                    continue;
                }
                Piece::Action(action) => action,
            };
            let action = action.trim();
            if action == "end" {
                let Some((Some(query), body)) = (stack.len() > 1).then(|| stack.pop()).flatten()
                else {
                    return Err("{end} without a {range …} to close".into());
                };
                push(&mut stack, Node::Range { query, body });
            } else if let Some(query) = action.strip_prefix("range ") {
                stack.push((Some(Query::parse(query)?), Vec::new()));
            } else if action.starts_with('"') {
                push(&mut stack, Node::Text(unquote(action)?));
            } else {
                push(&mut stack, Node::Query(Query::parse(action)?));
            }
        }
        match <[_; 1]>::try_from(stack) {
            Ok([(_, nodes)]) => Ok(Template { nodes }),
            Err(_) => Err("a {range …} has no {end}".into()),
        }
    }

    /// The template filled in from `document`. A query that finds nothing prints nothing (as
    /// kubectl's default `--allow-missing-template-keys`); several results are joined by spaces.
    pub fn render(&self, document: &Value) -> anyhow::Result<String> {
        let mut text = String::new();
        render_nodes(&self.nodes, document, document, &mut text)?;
        Ok(text)
    }
}

fn push(stack: &mut [(Option<Query>, Vec<Node>)], node: Node) {
    if let Some((_, nodes)) = stack.last_mut() {
        nodes.push(node);
    }
}

fn render_nodes(
    nodes: &[Node],
    root: &Value,
    current: &Value,
    text: &mut String,
) -> anyhow::Result<()> {
    for node in nodes {
        match node {
            Node::Text(literal) => text.push_str(literal),
            Node::Query(query) => {
                let values: Vec<String> = query.run(root, current)?.into_iter().map(cell).collect();
                text.push_str(&values.join(" "));
            }
            Node::Range { query, body } => {
                for value in query.run(root, current)? {
                    render_nodes(body, root, value, text)?;
                }
            }
        }
    }
    Ok(())
}

/// A result as kubectl prints it: strings bare, everything else as compact JSON.
fn cell(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

impl Query {
    fn parse(text: &str) -> Result<Query, String> {
        let text = text.trim();
        let (from_root, path) = match text.as_bytes().first() {
            Some(b'$') => (true, &text[1..]),
            Some(b'@') => (false, &text[1..]),
            Some(b'.' | b'[') => (false, text),
            Some(_) => return Err(format!("{text:?}: a query starts with '.', '$' or '@'")),
            None => return Err("an empty {} in the template".into()),
        };
        let rfc = format!("${}", rfc_9535_segments(path)?);
        let compiled = jsonpath_rust::parser::parse_json_path(&rfc)
            .map_err(|error| format!("{text:?} is not a JSONPath query: {error}"))?;
        Ok(Query {
            from_root,
            compiled,
        })
    }

    fn run<'a>(&self, root: &'a Value, current: &'a Value) -> anyhow::Result<Vec<&'a Value>> {
        let start = if self.from_root { root } else { current };
        let results = js_path_process(&self.compiled, start)
            .map_err(|error| anyhow::anyhow!("evaluate the JSONPath template: {error}"))?;
        Ok(results.into_iter().map(|result| result.val()).collect())
    }
}

/// kubectl's dotted segments in RFC 9535 form: `.name` where the name is an RFC shorthand,
/// `['…']` for names RFC 9535 only allows in brackets (`app-name`, `app\.kubernetes\.io/name`,
/// with kubectl's `\.` for a dot inside a name); brackets (indexes, slices, filters) as they are.
fn rfc_9535_segments(path: &str) -> Result<String, String> {
    if path.is_empty() || path == "." {
        return Ok(String::new());
    }
    let mut out = String::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                let descendant = chars.next_if_eq(&'.').is_some();
                let prefix = if descendant { ".." } else { "." };
                match chars.peek() {
                    Some('*') => {
                        chars.next();
                        out.push_str(prefix);
                        out.push('*');
                    }
                    // `.[0]` is `[0]`; `..[0]` stays a descendant segment.
                    Some('[') => out.push_str(&prefix[1..]),
                    _ => {
                        let name = member_name(&mut chars);
                        if name.is_empty() {
                            return Err(format!("{path:?}: a '.' with no name after it"));
                        }
                        let selector = name_selector(&name);
                        // `..name` and `..['a-b']`; `.name` and `['a-b']`.
                        if descendant {
                            out.push_str(if selector.starts_with('.') { "." } else { ".." });
                        }
                        out.push_str(&selector);
                    }
                }
            }
            '[' => out.push_str(&bracket(&mut chars, path)?),
            other => return Err(format!("{path:?}: unexpected {other:?}")),
        }
    }
    Ok(out)
}

/// A member name up to the next unescaped `.` or `[`, with `\.` read as a dot.
fn member_name(chars: &mut std::iter::Peekable<std::str::Chars>) -> String {
    let mut name = String::new();
    while let Some(&c) = chars.peek() {
        match c {
            '.' | '[' => break,
            '\\' => {
                chars.next();
                if let Some(escaped) = chars.next() {
                    name.push(escaped);
                }
                continue;
            }
            _ => name.push(c),
        }
        chars.next();
    }
    name
}

/// `.name` when RFC 9535's shorthand allows the name, `['name']` otherwise.
fn name_selector(name: &str) -> String {
    let mut chars = name.chars();
    let shorthand = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || !first.is_ascii())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii());
    if shorthand {
        format!(".{name}")
    } else {
        format!("['{}']", name.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// A bracketed selector copied as it is, up to its matching `]` (quotes and nested brackets
/// of filters included).
fn bracket(chars: &mut std::iter::Peekable<std::str::Chars>, path: &str) -> Result<String, String> {
    let mut out = String::from('[');
    let mut depth = 1;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in chars.by_ref() {
        out.push(c);
        match (quote, c) {
            (Some(_), '\\') if !escaped => {
                escaped = true;
                continue;
            }
            (Some(q), c) if c == q && !escaped => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Ok(out);
                }
            }
            _ => {}
        }
        escaped = false;
    }
    Err(format!("{path:?}: a '[' has no ']'"))
}

/// A quoted string action (`{"\n"}`) with its escapes (`\n`, `\t`, `\r`, `\"`, `\\`).
fn unquote(action: &str) -> Result<String, String> {
    let inner = action
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .filter(|_| action.len() >= 2)
        .ok_or_else(|| format!("{action}: a string has no closing quote"))?;
    let mut text = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            text.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => text.push('\n'),
            Some('t') => text.push('\t'),
            Some('r') => text.push('\r'),
            Some(other) => text.push(other),
            None => return Err(format!("{action}: a string ends in '\\'")),
        }
    }
    Ok(text)
}

enum Piece {
    Text(String),
    Action(String),
}

/// The template cut into literal text and the insides of `{…}` (a `}` inside quotes does not
/// close an action).
fn pieces(template: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '{' {
            text.push(c);
            continue;
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        let mut action = String::new();
        let mut quote: Option<char> = None;
        let mut escaped = false;
        let mut closed = false;
        for c in chars.by_ref() {
            match (quote, c) {
                (None, '}') => {
                    closed = true;
                    break;
                }
                (None, '"' | '\'') => quote = Some(c),
                (Some(_), '\\') if !escaped => {
                    escaped = true;
                    action.push(c);
                    continue;
                }
                (Some(q), c) if c == q && !escaped => quote = None,
                _ => {}
            }
            escaped = false;
            action.push(c);
        }
        if !closed {
            return Err(format!("{template:?}: a '{{' has no '}}'"));
        }
        pieces.push(Piece::Action(action));
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn render(template: &str, document: &Value) -> String {
        Template::parse(template)
            .unwrap_or_else(|error| panic!("{template}: {error}"))
            .render(document)
            .unwrap()
    }

    fn list() -> Value {
        json!({"items": [
            {"kind": "Cluster", "metadata": {"name": "a", "labels": {
                "env": "prod", "app.kubernetes.io/name": "web", "tier-name": "front"}},
             "status": {"state": "Online", "bundles": [{"bundle": "x"}, {"bundle": "y"}],
                        "facts": {"nodes": {"total": 3, "ready": 2}}}},
            {"kind": "Cluster", "metadata": {"name": "b", "labels": {"env": "dev"}},
             "status": {"state": "Offline"}},
        ]})
    }

    #[test]
    fn a_query_prints_its_results_joined_by_spaces_and_text_around_it_as_is() {
        let cluster = &list()["items"][0];
        assert_eq!(render("{.metadata.name}", cluster), "a");
        assert_eq!(render("name={.metadata.name}!", cluster), "name=a!");
        assert_eq!(render("{.items[*].metadata.name}", &list()), "a b");
        assert_eq!(render("{$.items[1].status.state}", &list()), "Offline");
        assert_eq!(render("{@.metadata.name}", cluster), "a");
    }

    #[test]
    fn numbers_and_objects_print_as_json_and_a_missing_key_prints_nothing() {
        let cluster = &list()["items"][0];
        assert_eq!(render("{.status.facts.nodes.total}", cluster), "3");
        assert_eq!(
            render("{.status.facts.nodes}", cluster),
            r#"{"ready":2,"total":3}"#
        );
        assert_eq!(render("[{.spec.nothing}]", cluster), "[]");
        assert_eq!(
            render("{.items[*].status.bundles[*].bundle}", &list()),
            "x y"
        );
    }

    #[test]
    fn range_repeats_its_body_per_result_with_quoted_strings_and_nesting() {
        assert_eq!(
            render(
                r#"{range .items[*]}{.metadata.name}{"\t"}{.status.state}{"\n"}{end}"#,
                &list()
            ),
            "a\tOnline\nb\tOffline\n"
        );
        assert_eq!(
            render(
                r#"{range .items[*]}{.metadata.name}:{range .status.bundles[*]}{.bundle},{end}{"\n"}{end}"#,
                &list()
            ),
            "a:x,y,\nb:\n"
        );
        // `$` inside a range is still the whole document.
        assert_eq!(
            render("{range .items[*]}{$.items[0].metadata.name}{end}", &list()),
            "aa"
        );
    }

    #[test]
    fn names_with_dots_dashes_and_slashes_are_read_as_kubectl_writes_them() {
        let cluster = &list()["items"][0];
        assert_eq!(
            render(r"{.metadata.labels.app\.kubernetes\.io/name}", cluster),
            "web"
        );
        assert_eq!(render("{.metadata.labels.tier-name}", cluster), "front");
        assert_eq!(render("{.metadata.labels['tier-name']}", cluster), "front");
        assert_eq!(render("{..bundle}", cluster), "x y");
        assert_eq!(render("{.metadata.labels.*}", &list()["items"][1]), "dev");
    }

    #[test]
    fn filters_select_items_by_a_field() {
        assert_eq!(
            render(
                r#"{.items[?(@.status.state=="Offline")].metadata.name}"#,
                &list()
            ),
            "b"
        );
        assert_eq!(
            render(
                "{range .items[?(@.metadata.labels.env=='prod')]}{.metadata.name}{end}",
                &list()
            ),
            "a"
        );
    }

    #[test]
    fn malformed_templates_are_refused_with_what_is_wrong() {
        for (template, says) in [
            ("{.metadata.name", "has no '}'"),
            ("{end}", "without a {range"),
            ("{range .items[*]}{.a}", "has no {end}"),
            ("{.items[}", "has no ']'"),
            ("{metadata}", "starts with '.'"),
            ("{}", "empty"),
            (r#"{"a" b}"#, "closing quote"),
            ("{.items[?(@.a==)]}", "not a JSONPath query"),
        ] {
            let error = Template::parse(template).unwrap_err();
            assert!(error.contains(says), "{template}: {error}");
        }
    }
}
