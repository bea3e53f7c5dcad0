//! `flotilla label KIND NAME k=v k2- …`: add, change (with `--overwrite`) or remove labels, like
//! kubectl label: the object is read, its labels changed, and written back.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use clap::Args;
use flotilla_client::{AdminClient, Resource, with_resource};

use crate::{
    args::{Connection, kind_help, parse_kind},
    output,
};

#[derive(Args)]
pub struct LabelArgs {
    #[arg(help = kind_help())]
    kind: String,
    /// The object's name.
    name: String,
    /// `key=value` to set, `key-` to remove.
    #[arg(required = true)]
    changes: Vec<String>,
    /// Change a label that already has another value (without it, that is refused).
    #[arg(long)]
    overwrite: bool,
    #[command(flatten)]
    connection: Connection,
}

/// Whether a label that has another value may be changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    Keep,
    Overwrite,
}

pub async fn run(args: LabelArgs) -> anyhow::Result<()> {
    let LabelArgs {
        kind,
        name,
        changes,
        overwrite,
        connection,
    } = args;
    let kind = parse_kind(&kind)?;
    let client = connection.admin()?;
    let existing = if overwrite {
        Existing::Overwrite
    } else {
        Existing::Keep
    };
    with_resource!(kind, K => relabel::<K>(&client, &name, &changes, existing).await)?;
    output::out(&format!("{} labeled\n", output::object_ref(kind, &name)))
}

async fn relabel<K: Resource>(
    client: &AdminClient,
    name: &str,
    changes: &[String],
    existing: Existing,
) -> anyhow::Result<()> {
    let api = client.api::<K>();
    let mut object = api.get(name).await?;
    change_labels(&mut object.metadata_mut().labels, changes, existing)?;
    object.clear_status();
    api.replace(name, &object).await?;
    Ok(())
}

/// Applies `key=value` and `key-` changes in order; a key to remove that is not there is only
/// reported.
fn change_labels(
    labels: &mut BTreeMap<String, String>,
    changes: &[String],
    existing: Existing,
) -> anyhow::Result<()> {
    for change in changes {
        if let Some(key) = change.strip_suffix('-') {
            if labels.remove(key).is_none() {
                eprintln!("label {key:?} not found");
            }
            continue;
        }
        let (key, value) = change.split_once('=').with_context(|| {
            format!("{change:?}: write key=value to set a label, key- to remove one")
        })?;
        if let Some(current) = labels.get(key)
            && current != value
            && existing == Existing::Keep
        {
            bail!("label {key:?} already has a value ({current}); pass --overwrite to change it");
        }
        labels.insert(key.to_string(), value.to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(list: &[&str]) -> Vec<String> {
        list.iter().map(|change| change.to_string()).collect()
    }

    #[test]
    fn label_changes_set_and_remove_in_order_and_refuse_a_silent_overwrite() {
        let mut labels = BTreeMap::from([("env".to_string(), "dev".to_string())]);
        change_labels(
            &mut labels,
            &changes(&["tier=web", "env=dev", "gone-"]),
            Existing::Keep,
        )
        .unwrap();
        assert_eq!(labels.get("tier").map(String::as_str), Some("web"));
        let refused = change_labels(&mut labels, &changes(&["env=prod"]), Existing::Keep)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("--overwrite"), "{refused}");
        change_labels(
            &mut labels,
            &changes(&["env=prod", "tier-"]),
            Existing::Overwrite,
        )
        .unwrap();
        assert_eq!(
            labels,
            BTreeMap::from([("env".to_string(), "prod".to_string())])
        );
        assert!(change_labels(&mut labels, &changes(&["novalue"]), Existing::Keep).is_err());
    }
}
