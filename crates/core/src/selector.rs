//! Owns label selector semantics: parsing the Kubernetes string form, validating and compiling
//! the API form, matching label sets, and rendering a canonical string that parses back.

use std::collections::BTreeMap;
use std::fmt;

use flotilla_api::selector::{LabelSelector, LabelSelectorRequirement};

/// How a requirement compares a label against its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl Operator {
    /// The exact API spelling (`In`, `NotIn`, `Exists`, `DoesNotExist`).
    pub fn name(self) -> &'static str {
        match self {
            Operator::In => "In",
            Operator::NotIn => "NotIn",
            Operator::Exists => "Exists",
            Operator::DoesNotExist => "DoesNotExist",
        }
    }

    /// Reads the exact, case-sensitive API spelling.
    pub fn from_name(name: &str) -> Option<Operator> {
        let all = [Self::In, Self::NotIn, Self::Exists, Self::DoesNotExist];
        all.into_iter().find(|op| op.name() == name)
    }
}

/// One ANDed condition. Inside a [`Selector`], `values` is sorted and deduplicated, and empty
/// exactly for `Exists`/`DoesNotExist`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

impl Requirement {
    /// Whether a label whose value is `value` (`None` when absent) satisfies this requirement.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let listed = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::In => value.is_some_and(listed),
            Operator::NotIn => !value.is_some_and(listed),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }

    fn validate(&self) -> Result<(), SelectorError> {
        let (key, operator) = (self.key.clone(), self.operator);
        if let Err(reason) = validate_label_key(&key) {
            return Err(SelectorError::InvalidKey { key, reason });
        }
        let values = self.values.clone();
        let takes_values = matches!(operator, Operator::In | Operator::NotIn);
        match (takes_values, values.is_empty()) {
            (true, true) => return Err(SelectorError::MissingValues { key, operator }),
            (false, false) => {
                return Err(SelectorError::UnexpectedValues {
                    key,
                    operator,
                    values,
                });
            }
            _ => {}
        }
        for value in values {
            if let Err(reason) = validate_label_value(&value) {
                return Err(SelectorError::InvalidValue { key, value, reason });
            }
        }
        Ok(())
    }
}

fn requirement(key: &str, operator: Operator, values: Vec<String>) -> Requirement {
    let key = key.to_owned();
    Requirement {
        key,
        operator,
        values,
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        match (self.operator, self.values.as_slice()) {
            (Operator::Exists, _) => write!(f, "{key}"),
            (Operator::DoesNotExist, _) => write!(f, "!{key}"),
            (Operator::In, [value]) => write!(f, "{key}={value}"),
            (Operator::NotIn, [value]) => write!(f, "{key}!={value}"),
            (Operator::In, values) => write!(f, "{key} in ({})", values.join(",")),
            (Operator::NotIn, values) => write!(f, "{key} notin ({})", values.join(",")),
        }
    }
}

/// A validated label selector: requirements ANDed, sorted by key then operator, deduplicated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

/// Why a selector was rejected. Messages quote the offending text and say how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum SelectorError {
    #[error("invalid label selector {text:?}: {message}")]
    Parse { text: String, message: String },
    #[error("invalid label key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("invalid value {value:?} for label {key:?}: {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error(
        "unknown operator {operator:?} for label {key:?}; use exactly In, NotIn, Exists or DoesNotExist"
    )]
    UnknownOperator { key: String, operator: String },
    #[error(
        "operator {operator:?} for label {key:?} needs at least one value; list values, or use Exists/DoesNotExist to test only the key"
    )]
    MissingValues { key: String, operator: Operator },
    #[error(
        "operator {operator:?} for label {key:?} takes no values but got {values:?}; remove the values, or use In/NotIn to compare them"
    )]
    UnexpectedValues {
        key: String,
        operator: Operator,
        values: Vec<String>,
    },
}

impl Selector {
    /// The selector with no requirements; it matches every label set.
    pub fn everything() -> Selector {
        Selector::default()
    }

    /// Validates requirements (keys, values, value counts) and normalizes their order.
    pub fn new(requirements: Vec<Requirement>) -> Result<Selector, SelectorError> {
        requirements.iter().try_for_each(Requirement::validate)?;
        Ok(Selector::normalized(requirements))
    }

    fn normalized(mut requirements: Vec<Requirement>) -> Selector {
        for requirement in &mut requirements {
            requirement.values.sort();
            requirement.values.dedup();
        }
        requirements.sort();
        requirements.dedup();
        Selector { requirements }
    }

    /// Parses the Kubernetes string form, e.g. `env in (prod,staging),tier!=db,!legacy`.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let mut parser = Parser {
            text,
            tokens: lex(text),
            pos: 0,
        };
        let mut requirements = Vec::new();
        while parser.peek() != Token::End {
            let requirement = parser.requirement()?;
            match parser.next() {
                Token::Sym(",") if parser.peek() == Token::End => {
                    return Err(parser.error(
                        "trailing ',' with no requirement after it; remove the comma or add a requirement",
                    ));
                }
                Token::End | Token::Sym(",") => {}
                other => {
                    return Err(parser.error(format!(
                        "unexpected {} after the requirement on {:?}; separate requirements with ',', e.g. a=b,c in (d,e)",
                        other.describe(),
                        requirement.key
                    )));
                }
            }
            requirements.push(requirement);
        }
        Ok(Selector::normalized(requirements))
    }

    /// Validates and compiles the API form; `matchLabels` entries become single-value `In`.
    pub fn from_api(selector: &LabelSelector) -> Result<Selector, SelectorError> {
        let labels = selector
            .match_labels
            .iter()
            .map(|(key, value)| Ok(requirement(key, Operator::In, vec![value.clone()])));
        let expressions = selector.match_expressions.iter().map(|expression| {
            let key = &expression.key;
            let Some(operator) = Operator::from_name(&expression.operator) else {
                let (key, operator) = (key.clone(), expression.operator.clone());
                return Err(SelectorError::UnknownOperator { key, operator });
            };
            Ok(requirement(key, operator, expression.values.clone()))
        });
        Selector::new(labels.chain(expressions).collect::<Result<_, _>>()?)
    }

    /// The API form: single-value `In` becomes `matchLabels` (the first per key), the rest
    /// `matchExpressions`.
    pub fn to_api(&self) -> LabelSelector {
        let mut api = LabelSelector::default();
        for requirement in &self.requirements {
            if let (Operator::In, [value]) = (requirement.operator, requirement.values.as_slice())
                && !api.match_labels.contains_key(&requirement.key)
            {
                api.match_labels
                    .insert(requirement.key.clone(), value.clone());
                continue;
            }
            api.match_expressions.push(LabelSelectorRequirement {
                key: requirement.key.clone(),
                operator: requirement.operator.name().to_owned(),
                values: requirement.values.clone(),
            });
        }
        api
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether the labels, read through `label` (a key's value, `None` when absent), satisfy
    /// every requirement.
    pub fn matches<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements.iter().all(|r| r.matches(label(&r.key)))
    }

    pub fn matches_map(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches(|key| labels.get(key).map(String::as_str))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            let separator = if i == 0 { "" } else { "," };
            write!(f, "{separator}{requirement}")?;
        }
        Ok(())
    }
}

/// Symbols of apimachinery's label lexer, two-character ones first.
const SYMBOLS: [&str; 9] = ["!=", "==", "!", "=", "(", ")", ",", ">", "<"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'t> {
    Ident(&'t str),
    Sym(&'static str),
    End,
}

impl Token<'_> {
    fn describe(self) -> String {
        match self {
            Token::Ident(text) => format!("{text:?}"),
            Token::Sym(symbol) => format!("'{symbol}'"),
            Token::End => "end of text".to_owned(),
        }
    }
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn lex(text: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut rest = text.trim_start_matches(is_space);
    while !rest.is_empty() {
        let (token, len) = match SYMBOLS.into_iter().find(|s| rest.starts_with(s)) {
            Some(symbol) => (Token::Sym(symbol), symbol.len()),
            None => {
                let ends = |c: char| is_space(c) || SYMBOLS.iter().any(|s| s.starts_with(c));
                let len = rest.find(ends).unwrap_or(rest.len());
                (Token::Ident(rest.get(..len).unwrap_or(rest)), len)
            }
        };
        tokens.push(token);
        rest = rest.get(len..).unwrap_or("").trim_start_matches(is_space);
    }
    tokens
}

const KEY_HINT: &str =
    "write e.g. key=value, key!=value, key in (a,b), key notin (a,b), key or !key";

struct Parser<'t> {
    text: &'t str,
    tokens: Vec<Token<'t>>,
    pos: usize,
}

impl<'t> Parser<'t> {
    fn peek(&self) -> Token<'t> {
        self.tokens.get(self.pos).copied().unwrap_or(Token::End)
    }

    fn next(&mut self) -> Token<'t> {
        let token = self.peek();
        self.pos = self.pos.saturating_add(1).min(self.tokens.len());
        token
    }

    fn error(&self, message: impl Into<String>) -> SelectorError {
        SelectorError::Parse {
            text: self.text.to_owned(),
            message: message.into(),
        }
    }

    fn at_requirement_end(&self) -> bool {
        matches!(self.peek(), Token::End | Token::Sym(","))
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let negated = self.peek() == Token::Sym("!");
        if negated {
            self.next();
        }
        let key = match self.next() {
            Token::Ident(key) => key,
            other if negated => {
                let found = other.describe();
                let message = format!(
                    "'!' must be followed by a label key but found {found}; write e.g. !key"
                );
                return Err(self.error(message));
            }
            other => {
                let found = other.describe();
                return Err(self.error(format!(
                    "expected a label key but found {found}; {KEY_HINT}"
                )));
            }
        };
        validate_label_key(key)
            .map_err(|reason| self.error(format!("invalid label key {key:?}: {reason}")))?;
        let requirement = |operator, values| requirement(key, operator, values);
        if negated && !self.at_requirement_end() {
            return Err(self.error(format!(
                "'!' only negates a bare key, but {key:?} is followed by {}; write !{key} for \"no such label\", or {key}!=value",
                self.peek().describe()
            )));
        }
        if self.at_requirement_end() {
            let operator = if negated {
                Operator::DoesNotExist
            } else {
                Operator::Exists
            };
            return Ok(requirement(operator, Vec::new()));
        }
        match self.next() {
            Token::Sym("=" | "==") => Ok(requirement(Operator::In, vec![self.exact_value(key)?])),
            Token::Sym("!=") => Ok(requirement(Operator::NotIn, vec![self.exact_value(key)?])),
            Token::Ident("in") => Ok(requirement(Operator::In, self.value_set(key, "in")?)),
            Token::Ident("notin") => Ok(requirement(Operator::NotIn, self.value_set(key, "notin")?)),
            Token::Sym(">" | "<") => Err(self.error(format!(
                "'>' and '<' are not supported for label {key:?}; list the allowed values instead, e.g. {key} in (v1,v2)"
            ))),
            other => Err(self.error(format!(
                "expected an operator after {key:?} but found {}; use =, ==, !=, in or notin, e.g. {key}=value",
                other.describe()
            ))),
        }
    }

    fn exact_value(&mut self, key: &str) -> Result<String, SelectorError> {
        if self.at_requirement_end() {
            return Ok(String::new());
        }
        match self.next() {
            Token::Ident(value) => self.checked_value(key, value),
            other => Err(self.error(format!(
                "expected a value for {key:?} but found {}; write e.g. {key}=value",
                other.describe()
            ))),
        }
    }

    /// `( v1 , v2 )`; like apimachinery, an omitted item (`()`, `(a,)`) is the empty value.
    fn value_set(&mut self, key: &str, keyword: &str) -> Result<Vec<String>, SelectorError> {
        let example = format!("write e.g. {key} {keyword} (a,b)");
        let open = self.next();
        if open != Token::Sym("(") {
            let found = open.describe();
            let message =
                format!("missing '(' after {keyword:?} for {key:?}, found {found}; {example}");
            return Err(self.error(message));
        }
        let mut values = Vec::new();
        loop {
            values.push(match self.peek() {
                Token::Ident(value) => {
                    self.next();
                    self.checked_value(key, value)?
                }
                _ => String::new(),
            });
            match self.next() {
                Token::Sym(",") => {}
                Token::Sym(")") => return Ok(values),
                Token::End => {
                    let message = format!("missing closing ')' after values of {key:?}; {example}");
                    return Err(self.error(message));
                }
                other => {
                    return Err(self.error(format!(
                        "unexpected {} in the values of {key:?}; separate values with ',' and close with ')'; {example}",
                        other.describe()
                    )));
                }
            }
        }
    }

    fn checked_value(&self, key: &str, value: &str) -> Result<String, SelectorError> {
        validate_label_value(value).map_err(|reason| {
            self.error(format!("invalid value {value:?} for {key:?}: {reason}"))
        })?;
        Ok(value.to_owned())
    }
}

/// The rule shared by key names and values: at most 63 of `[-_.A-Za-z0-9]`, alphanumeric at
/// both ends.
fn check_label_text(what: &str, text: &str) -> Result<(), String> {
    let bytes = text.as_bytes();
    let edge = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
    let inner = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    if !(edge(bytes.first()) && edge(bytes.last()) && bytes.iter().all(inner)) {
        return Err(format!(
            "the {what} {text:?} must start and end with a letter or digit and contain only letters, digits, '-', '_' or '.', e.g. my-{what}_1.0"
        ));
    }
    if text.len() > 63 {
        return Err(format!(
            "the {what} is {} characters; shorten it to at most 63",
            text.len()
        ));
    }
    Ok(())
}

/// Lowercase RFC 1123 subdomain: dot-separated parts of `[-a-z0-9]`, alphanumeric at both ends.
fn is_dns_subdomain(text: &str) -> bool {
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    text.split('.').all(|part| {
        let bytes = part.as_bytes();
        bytes.first().is_some_and(alnum)
            && bytes.last().is_some_and(alnum)
            && bytes.iter().all(|b| alnum(b) || *b == b'-')
    })
}

/// Kubernetes label key rules: an optional DNS-subdomain prefix (at most 253) and '/', then a
/// name of 1-63 characters, alphanumeric at both ends with `-`, `_`, `.` allowed inside.
pub fn validate_label_key(key: &str) -> Result<(), String> {
    let name = match key.split_once('/') {
        None => key,
        Some((_, name)) if name.contains('/') => {
            return Err("it has more than one '/'; a key is an optional DNS prefix, one '/', then a name, e.g. example.com/app".to_owned());
        }
        Some((prefix, _)) if prefix.len() > 253 => {
            let len = prefix.len();
            return Err(format!(
                "the prefix is {len} characters; shorten it to at most 253"
            ));
        }
        Some((prefix, _)) if !is_dns_subdomain(prefix) => {
            return Err(format!(
                "the prefix {prefix:?} must be a lowercase DNS subdomain (dot-separated parts of a-z, 0-9 and '-', each starting and ending with a letter or digit), e.g. example.com"
            ));
        }
        Some((_, name)) => name,
    };
    if name.is_empty() {
        return Err("the name is empty; write a name such as app or example.com/app".to_owned());
    }
    check_label_text("name", name)
}

/// Kubernetes label value rules: empty, or 1-63 characters with the same charset as a key name.
pub fn validate_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        Ok(())
    } else {
        check_label_text("value", value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parsed requirements as `key Operator ['v1', 'v2']` joined by "; ", or the error message.
    fn shape(text: &str) -> String {
        match Selector::parse(text) {
            Ok(selector) => selector
                .requirements()
                .iter()
                .map(|r| format!("{} {:?} {:?}", r.key, r.operator, r.values).replace('"', "'"))
                .collect::<Vec<_>>()
                .join("; "),
            Err(err) => format!("error: {err}"),
        }
    }

    fn check_shapes(cases: &[(&str, &str)]) {
        for (text, expected) in cases {
            assert_eq!(shape(text), *expected, "parsing {text:?}");
        }
    }

    /// `"env=prod,gpu="` as a label map.
    fn labels(text: &str) -> BTreeMap<String, String> {
        let pairs = text.split(',').filter_map(|pair| pair.split_once('='));
        pairs.map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
    }

    fn api(json: &str) -> LabelSelector {
        serde_json::from_str(json).expect("test selector JSON is valid")
    }

    fn expression(key: &str, operator: &str, values: &[&str]) -> LabelSelector {
        let requirement = serde_json::json!({"key": key, "operator": operator, "values": values});
        api(&serde_json::json!({ "matchExpressions": [requirement] }).to_string())
    }

    fn api_error(selector: &LabelSelector) -> String {
        Selector::from_api(selector).map_or_else(|e| e.to_string(), |s| format!("accepted {s}"))
    }

    #[test]
    fn empty_selector_matches_everything() {
        let parsed = ["", " \t\n "].map(|text| Selector::parse(text).unwrap());
        let from_api = Selector::from_api(&api("{}")).unwrap();
        for selector in parsed.into_iter().chain([from_api, Selector::everything()]) {
            assert!(selector.is_everything());
            assert!(selector.matches_map(&labels("")) && selector.matches_map(&labels("a=b")));
            assert_eq!(selector.to_string(), "");
            assert_eq!(selector.to_api(), LabelSelector::default());
        }
        assert!(!Selector::parse("env").unwrap().is_everything());
    }

    #[test]
    fn every_operator_parses_from_the_string_form() {
        check_shapes(&[
            ("env=prod", "env In ['prod']"),
            ("env==prod", "env In ['prod']"),
            ("env!=prod", "env NotIn ['prod']"),
            ("env in (b,a,b)", "env In ['a', 'b']"),
            ("env notin (z,y)", "env NotIn ['y', 'z']"),
            ("gpu", "gpu Exists []"),
            ("!gpu", "gpu DoesNotExist []"),
            ("example.com/tier=db", "example.com/tier In ['db']"),
        ]);
    }

    #[test]
    fn whitespace_is_tolerated_around_tokens() {
        check_shapes(&[
            ("  env\t=\nprod  ", "env In ['prod']"),
            (" env == prod", "env In ['prod']"),
            ("env != prod\r\n", "env NotIn ['prod']"),
            ("env  in ( a , b )", "env In ['a', 'b']"),
            ("env notin(a)", "env NotIn ['a']"),
            ("! gpu , tier ", "gpu DoesNotExist []; tier Exists []"),
        ]);
    }

    #[test]
    fn empty_values_are_allowed_like_apimachinery() {
        check_shapes(&[
            ("a=", "a In ['']"),
            ("a!=,b", "a NotIn ['']; b Exists []"),
            ("a in ()", "a In ['']"),
            ("a in (x,)", "a In ['', 'x']"),
            ("a notin (,x)", "a NotIn ['', 'x']"),
        ]);
    }

    #[test]
    fn keywords_are_plain_text_in_key_and_value_positions() {
        check_shapes(&[
            ("in in (notin)", "in In ['notin']"),
            ("a=in", "a In ['in']"),
            ("!notin", "notin DoesNotExist []"),
        ]);
    }

    #[test]
    fn requirements_are_sorted_by_key_then_operator_and_deduplicated() {
        let expected = "a In ['x']; a DoesNotExist []; b In ['y']; b Exists []";
        assert_eq!(shape("b,!a,a=x,b=y,a=x"), expected);
        let reordered = Selector::parse("a=x,b=y,b,!a").unwrap();
        assert_eq!(Selector::parse("b,!a,a=x,b=y").unwrap(), reordered);
    }

    #[test]
    fn notin_matches_clusters_without_the_key() {
        let selector = Selector::parse("env notin (prod)").unwrap();
        assert!(selector.matches_map(&labels("")));
        assert!(selector.matches_map(&labels("env=dev")));
        assert!(!selector.matches_map(&labels("env=prod")));
    }

    #[test]
    fn matching_follows_kubernetes_semantics() {
        let cases = [
            ("env=prod", "env=prod", true),
            ("env=prod", "env=dev", false),
            ("env=prod", "", false),
            ("env=", "env=", true),
            ("env=", "", false),
            ("env in (prod,dev)", "env=dev", true),
            ("env in (prod,dev)", "env=qa", false),
            ("env notin (prod,dev)", "env=qa", true),
            ("env notin (prod,dev)", "env=dev", false),
            ("env!=prod", "", true),
            ("gpu", "gpu=", true),
            ("gpu", "env=prod", false),
            ("!gpu", "env=prod", true),
            ("!gpu", "gpu=a100", false),
            ("env=prod,!gpu", "env=prod", true),
            ("env=prod,!gpu", "env=prod,gpu=x", false),
            ("env=prod,env=dev", "env=prod", false),
        ];
        for (text, set, expected) in cases {
            let selector = Selector::parse(text).unwrap();
            assert_eq!(
                selector.matches_map(&labels(set)),
                expected,
                "{text} on {set}"
            );
            let lookup = |k: &str| {
                set.split(',')
                    .find_map(|p| p.strip_prefix(k)?.strip_prefix('='))
            };
            assert_eq!(
                selector.matches(lookup),
                expected,
                "{text} on {set} via lookup"
            );
        }
    }

    #[test]
    fn string_form_round_trips_through_display() {
        let cases = [
            ("env = prod", "env=prod"),
            ("env==prod", "env=prod"),
            ("env != prod", "env!=prod"),
            ("env in (b, a)", "env in (a,b)"),
            ("env notin (b,a)", "env notin (a,b)"),
            ("env notin (a)", "env!=a"),
            ("! gpu, gpu", "gpu,!gpu"),
            ("a in (x,), b=", "a in (,x),b="),
            ("x.io/in in (in,notin)", "x.io/in in (in,notin)"),
        ];
        for (input, canonical) in cases {
            let selector = Selector::parse(input).unwrap();
            assert_eq!(selector.to_string(), canonical, "{input}");
            assert_eq!(Selector::parse(canonical).unwrap(), selector, "{canonical}");
        }
    }

    #[test]
    fn malformed_string_is_an_error_naming_the_text() {
        let cases = [
            ("env in (a", "missing closing ')'"),
            ("env in a", "missing '('"),
            ("env in", "missing '('"),
            ("env in (a b)", "unexpected \"b\" in the values"),
            ("env in (a=b)", "unexpected '=' in the values"),
            ("a=b,", "trailing ','"),
            (",a", "expected a label key but found ','"),
            ("a,,b", "expected a label key but found ','"),
            ("=b", "expected a label key but found '='"),
            ("a b", "expected an operator after \"a\""),
            ("a=b c", "unexpected \"c\" after the requirement"),
            ("a=(b)", "expected a value for \"a\""),
            ("a>1", "'>' and '<' are not supported"),
            ("!", "'!' must be followed by a label key"),
            ("!a=b", "'!' only negates a bare key"),
            ("-a=b", "invalid label key \"-a\""),
            ("a=b_", "invalid value \"b_\""),
            ("a=é", "invalid value \"é\""),
        ];
        for (text, fragment) in cases {
            let message = shape(text);
            let quoted = format!("error: invalid label selector {text:?}: ");
            assert!(message.starts_with(&quoted), "{message}");
            assert!(message.contains(fragment), "{text}: {message}");
        }
    }

    #[test]
    fn unclosed_paren_error_suggests_the_fix() {
        let expected = "invalid label selector \"env in (a\": missing closing ')' after values of \"env\"; write e.g. env in (a,b)";
        assert_eq!(shape("env in (a"), format!("error: {expected}"));
    }

    #[test]
    fn hostile_input_is_rejected_without_panicking() {
        let (long, deep) = ("a".repeat(100_000), "(".repeat(10_000));
        let odd = "\u{0} ü=ß a\u{200b} a=( !!a a!==b a=b=c ) a<b";
        for text in odd.split(' ').chain([long.as_str(), deep.as_str()]) {
            assert!(Selector::parse(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn in_requires_at_least_one_value() {
        for operator in ["In", "NotIn"] {
            let err = Selector::from_api(&expression("env", operator, &[])).unwrap_err();
            assert!(matches!(err, SelectorError::MissingValues { .. }), "{err}");
            let message = err.to_string();
            assert!(
                message.contains("\"env\" needs at least one value"),
                "{message}"
            );
        }
    }

    #[test]
    fn exists_operators_reject_values() {
        for operator in ["Exists", "DoesNotExist"] {
            let message = api_error(&expression("gpu", operator, &["x"]));
            let expected = format!("operator {operator} for label \"gpu\" takes no values");
            assert!(message.starts_with(&expected), "{message}");
        }
    }

    #[test]
    fn from_api_requires_exact_operator_names() {
        for operator in ["in", "notin", "Equals", "", "Exists "] {
            let message = api_error(&expression("env", operator, &["a"]));
            let expected = format!("unknown operator {operator:?} for label \"env\"; use exactly");
            assert!(message.starts_with(&expected), "{message}");
        }
    }

    #[test]
    fn from_api_validates_keys_and_values() {
        let key = api_error(&api(r#"{"matchLabels": {"bad key": "x"}}"#));
        assert!(key.starts_with("invalid label key \"bad key\""), "{key}");
        let value = api_error(&expression("env", "In", &["ok", "no way"]));
        assert!(
            value.starts_with("invalid value \"no way\" for label \"env\""),
            "{value}"
        );
    }

    #[test]
    fn from_api_combines_match_labels_and_expressions() {
        let selector = Selector::from_api(&api(
            r#"{"matchLabels": {"env": "prod"}, "matchExpressions": [
                {"key": "tier", "operator": "NotIn", "values": ["db", "cache", "db"]},
                {"key": "gpu", "operator": "Exists"}]}"#,
        ));
        let expected = "env=prod,gpu,tier notin (cache,db)";
        assert_eq!(selector.unwrap().to_string(), expected);
    }

    #[test]
    fn to_api_puts_single_value_in_into_match_labels() {
        let selector = Selector::parse("env=prod,zone in (a,b),tier!=db,!gpu").unwrap();
        let expected = api(r#"{"matchLabels": {"env": "prod"}, "matchExpressions": [
            {"key": "gpu", "operator": "DoesNotExist"},
            {"key": "tier", "operator": "NotIn", "values": ["db"]},
            {"key": "zone", "operator": "In", "values": ["a", "b"]}]}"#);
        assert_eq!(selector.to_api(), expected);
    }

    #[test]
    fn api_form_round_trips_even_with_repeated_keys() {
        let texts = [
            "env=a,env=b",
            "a in (,x)",
            "env=prod,zone in (a,b),tier!=db,!gpu,gpu",
        ];
        for selector in texts.map(|text| Selector::parse(text).unwrap()) {
            let back = Selector::from_api(&selector.to_api()).unwrap();
            assert_eq!(back, selector, "{selector}");
        }
    }

    #[test]
    fn new_validates_and_normalizes_requirements() {
        let requirement = |key: &str, operator, values: &[&str]| Requirement {
            key: key.to_owned(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let unsorted = vec![
            requirement("b", Operator::Exists, &[]),
            requirement("a", Operator::In, &["y", "x", "y"]),
        ];
        assert_eq!(Selector::new(unsorted).unwrap().to_string(), "a in (x,y),b");
        assert!(Selector::new(vec![requirement("a", Operator::In, &[])]).is_err());
        assert!(Selector::new(vec![requirement("a b", Operator::Exists, &[])]).is_err());
    }

    #[test]
    fn prefixed_keys_are_valid() {
        let long_prefix = format!("{}/x", "a".repeat(253));
        let keys = "app A1 example.com/app a-b.c/x_y.z k8s.io/name";
        for key in keys.split(' ').chain([long_prefix.as_str()]) {
            assert_eq!(validate_label_key(key), Ok(()), "{key}");
        }
    }

    #[test]
    fn key_longer_than_63_is_rejected() {
        assert_eq!(validate_label_key(&"a".repeat(63)), Ok(()));
        let err = validate_label_key(&"a".repeat(64)).unwrap_err();
        assert!(err.contains("64") && err.contains("at most 63"), "{err}");
        assert!(validate_label_key(&format!("example.com/{}", "a".repeat(64))).is_err());
    }

    #[test]
    fn prefix_must_be_a_lowercase_dns_subdomain() {
        let long_prefix = format!("{}/x", "a".repeat(254));
        let keys = "Example.com/a a..b/x -a.com/x a_b/x .a/x /x a/b/c";
        for key in keys.split(' ').chain([long_prefix.as_str()]) {
            assert!(validate_label_key(key).is_err(), "{key}");
        }
    }

    #[test]
    fn key_name_must_be_nonempty_and_alphanumeric_at_both_ends() {
        let keys = "example.com/ -a a- _a a. a=b é";
        for key in keys.split(' ').chain(["", "a b"]) {
            assert!(validate_label_key(key).is_err(), "{key:?}");
        }
        assert_eq!(validate_label_key("a-_.b"), Ok(()));
    }

    #[test]
    fn label_values_allow_empty_and_the_name_charset_up_to_63() {
        let max = "v".repeat(63);
        for value in ["", "a", "my-value_1.0", &max] {
            assert_eq!(validate_label_value(value), Ok(()), "{value}");
        }
        let over = "v".repeat(64);
        for value in ["-a", "a.", "a b", "a/b", &over] {
            assert!(validate_label_value(value).is_err(), "{value}");
        }
    }
}
