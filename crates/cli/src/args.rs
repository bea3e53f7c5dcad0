//! Arguments several commands share: the admin connection (`--server`, `--token`), kinds (with
//! did-you-mean), `--sort` and `k=v` label lists.

use std::collections::BTreeMap;

use clap::Args;
use flotilla_api::Kind;
use flotilla_client::AdminClient;

#[derive(Args, Clone)]
pub struct Connection {
    /// URL of the flotilla server.
    #[arg(
        long,
        env = "FLOTILLA_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// Admin API token (default: the contents of ./flotilla-data/admin-token, if present).
    #[arg(long, env = "FLOTILLA_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
}

impl Connection {
    /// A client for the admin API, with the token given or the one a local server wrote.
    pub fn admin(&self) -> anyhow::Result<AdminClient> {
        let Connection { server, token } = self;
        let token = match token {
            Some(token) => token.clone(),
            None => std::fs::read_to_string("flotilla-data/admin-token")
                .map(|t| t.trim().to_string())
                .map_err(|_| {
                    anyhow::anyhow!(
                        "no admin token: pass --token or set FLOTILLA_TOKEN (the server wrote one to <data-dir>/admin-token)"
                    )
                })?,
        };
        Ok(AdminClient::new(server, &token)?)
    }
}

/// The kinds the server serves, as help and errors list them (`clusters, clustergroups, …`),
/// from `Kind::ALL` so a new kind shows up without editing any text.
pub fn kinds_list() -> String {
    Kind::ALL.map(Kind::plural).join(", ")
}

/// The help line of a KIND argument.
pub fn kind_help() -> String {
    format!(
        "Kind of object: {} (singular or plural, any case)",
        kinds_list()
    )
}

/// A kind as a user types it (`clusters`, `bundle`, `cg`, …); a typo gets the nearest kind.
pub fn parse_kind(text: &str) -> anyhow::Result<Kind> {
    if let Some(kind) = Kind::parse(text) {
        return Ok(kind);
    }
    match nearest_kind(text) {
        Some(near) => anyhow::bail!("unknown kind {text:?}; did you mean {near:?}?"),
        None => anyhow::bail!("unknown kind {text:?}; use one of {}", kinds_list()),
    }
}

/// Most edits (insert, delete, change or swap two letters) a typo may be from the kind it
/// suggests: two catches `bundels` and `clustr` without offering `secrets` for `tokens`.
const MOST_EDITS_FOR_A_SUGGESTION: usize = 2;

/// The singular or plural kind name closest to `text`, if it is close enough to be a typo.
fn nearest_kind(text: &str) -> Option<String> {
    let text = text.to_ascii_lowercase();
    Kind::ALL
        .into_iter()
        .flat_map(|kind| {
            [
                kind.plural().to_string(),
                kind.as_str().to_ascii_lowercase(),
            ]
        })
        .map(|name| (strsim::damerau_levenshtein(&text, &name), name))
        .filter(|(edits, name)| *edits <= MOST_EDITS_FOR_A_SUGGESTION && *edits < name.len() / 2)
        .min()
        .map(|(_, name)| name)
}

/// The list orders the server offers (`sort=name`, `sort=-name`); clap lists exactly these in
/// `--sort`'s help and accepts nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SortOrder {
    /// By name, A to Z (the default).
    #[value(name = "name")]
    Name,
    /// By name, Z to A.
    #[value(name = "-name")]
    NameDescending,
}

impl SortOrder {
    /// The server's `sort` query value.
    pub fn query(self) -> String {
        match self {
            SortOrder::Name => "name".into(),
            SortOrder::NameDescending => "-name".into(),
        }
    }
}

/// Labels written `k=v,k2=v2`, each key and value checked as the server checks them.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("label {pair:?} has no '='; write key=value"))?;
        labels.insert(key.to_string(), value.to_string());
    }
    // The server's rule and message for the labels of a registration (count and syntax).
    flotilla_core::documents::labels("labels", &labels).map_err(|error| error.message)?;
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mistyped_kind_gets_the_nearest_kind_and_a_far_one_the_whole_list() {
        let error = parse_kind("bundels").unwrap_err().to_string();
        assert_eq!(error, r#"unknown kind "bundels"; did you mean "bundles"?"#);
        let error = parse_kind("Clustr").unwrap_err().to_string();
        assert!(error.ends_with(r#"did you mean "cluster"?"#), "{error}");
        let error = parse_kind("pods").unwrap_err().to_string();
        assert!(error.contains("use one of clusters, "), "{error}");
        assert_eq!(parse_kind("CG").unwrap(), Kind::ClusterGroup);
    }

    #[test]
    fn every_kind_is_in_the_list_help_and_errors_show() {
        let help = kind_help();
        for kind in Kind::ALL {
            assert!(help.contains(kind.plural()), "{help}");
            assert_eq!(Kind::parse(kind.plural()), Some(kind));
        }
    }

    /// Every `--sort` value the help of `get` lists parses, written `--sort V` or `--sort=V`,
    /// and a value it does not list is refused.
    #[test]
    fn sort_accepts_exactly_what_its_help_lists() {
        let mut command = crate::cli_command();
        let get = command.find_subcommand_mut("get").expect("a get command");
        let help = get.render_long_help().to_string();
        let sort = get
            .get_arguments()
            .find(|arg| arg.get_id() == "sort")
            .expect("get --sort");
        let values: Vec<String> = sort
            .get_possible_values()
            .iter()
            .map(|value| value.get_name().to_string())
            .collect();
        assert_eq!(values, ["name", "-name"]);
        for value in &values {
            assert!(
                help.contains(value.as_str()),
                "{value} missing from:\n{help}"
            );
            for args in [
                vec!["flotilla", "get", "clusters", "--sort", value.as_str()],
                vec![
                    "flotilla",
                    "get",
                    "clusters",
                    format!("--sort={value}").as_str(),
                ],
            ] {
                crate::cli_command()
                    .try_get_matches_from(&args)
                    .unwrap_or_else(|error| panic!("{args:?}: {error}"));
            }
        }
        assert!(
            crate::cli_command()
                .try_get_matches_from(["flotilla", "get", "clusters", "--sort", "age"])
                .is_err()
        );
    }

    /// Every argument of every command (other helpers' new ones too) says what it is for.
    #[test]
    fn every_argument_of_every_command_has_a_help_line() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let builtin = ["help", "version"].contains(&arg.get_id().as_str());
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut command = crate::cli_command();
        command.build();
        let mut missing = Vec::new();
        walk(&command, "flotilla", &mut missing);
        assert!(
            missing.is_empty(),
            "arguments without help:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn a_bad_label_is_refused_with_the_message_registration_answers() {
        let request = flotilla_api::agent::RegisterRequest {
            token: "t.s".into(),
            name: "store-1".into(),
            client_id: "c".into(),
            labels: BTreeMap::from([("bad key".to_string(), "v".to_string())]),
            facts: Default::default(),
        };
        let server = flotilla_core::documents::registration(&request).unwrap_err();
        assert_eq!(parse_labels("env=prod,bad key=v"), Err(server.message));
        let too_many: Vec<String> = (0..=64).map(|i| format!("k{i}=v")).collect();
        let error = parse_labels(&too_many.join(",")).unwrap_err();
        assert!(error.contains("at most 64"), "{error}");
        assert_eq!(
            parse_labels("env=prod, tier=web"),
            Ok(BTreeMap::from([
                ("env".to_string(), "prod".to_string()),
                ("tier".to_string(), "web".to_string())
            ]))
        );
    }
}
