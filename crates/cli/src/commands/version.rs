//! `flotilla version`: this binary's release and commit, and the server's (with its store
//! kind), as `kubectl version` shows client and server. `--client` asks no server.

use clap::Args;
use flotilla_api::ServerVersion;
use flotilla_server::api::version::{COMMIT, VERSION};
use serde::Serialize;

use crate::{args::Connection, output};

#[derive(Args)]
pub struct VersionArgs {
    /// Print only this binary's version; no server is asked.
    #[arg(long)]
    client: bool,
    /// json or yaml; plain lines when unset.
    #[arg(short = 'o', long = "output", value_enum)]
    output: Option<VersionFormat>,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VersionFormat {
    Json,
    Yaml,
}

/// This binary's build.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClientVersion {
    version: &'static str,
    commit: &'static str,
}

/// What `-o json|yaml` prints: the client's build, and the server's unless `--client`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Versions {
    client_version: ClientVersion,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_version: Option<ServerVersion>,
}

pub async fn run(args: VersionArgs) -> anyhow::Result<()> {
    let VersionArgs {
        client,
        output,
        connection,
    } = args;
    let client_version = ClientVersion {
        version: VERSION,
        commit: COMMIT,
    };
    // As kubectl: the client's line is printed before the server is asked, so a server that
    // cannot be reached still leaves the client's version on the screen.
    if client {
        return print(
            &Versions {
                client_version,
                server_version: None,
            },
            output,
        );
    }
    if output.is_none() {
        print_client_line(&client_version)?;
    }
    let server_version = connection.admin()?.server_version().await?;
    match output {
        None => print_server_line(&server_version),
        Some(_) => print(
            &Versions {
                client_version,
                server_version: Some(server_version),
            },
            output,
        ),
    }
}

fn print(versions: &Versions, format: Option<VersionFormat>) -> anyhow::Result<()> {
    let value = serde_json::to_value(versions)?;
    match format {
        Some(VersionFormat::Json) => output::print_json(&value),
        Some(VersionFormat::Yaml) => output::print_yaml(&value),
        None => {
            print_client_line(&versions.client_version)?;
            match &versions.server_version {
                Some(server) => print_server_line(server),
                None => Ok(()),
            }
        }
    }
}

fn print_client_line(client: &ClientVersion) -> anyhow::Result<()> {
    output::out(&format!(
        "Client Version: {} (commit {})\n",
        client.version, client.commit
    ))
}

fn print_server_line(server: &ServerVersion) -> anyhow::Result<()> {
    let store = serde_json::to_value(server.store)?;
    output::out(&format!(
        "Server Version: {} (commit {}, store {})\n",
        server.version,
        server.commit,
        store.as_str().unwrap_or("unknown")
    ))
}
