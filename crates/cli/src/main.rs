//! `flotilla`: the one binary. Parses arguments and hands each command to its module under
//! `commands/`.

mod args;
mod commands;
mod documents;
mod install;
mod output;
mod signals;

use clap::{Parser, Subcommand};

use crate::commands::{
    agent, apply, bench, completion, delete, demo, describe, diff, edit, explain, get, history,
    label, render, rollout, server, sim, token, version,
};

/// The server and the simulator allocate many small, short-lived objects from several threads;
/// mimalloc serves them with less CPU and fragmentation than the system allocator (measured in
/// docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "flotilla",
    version,
    about = "GitOps management for fleets of Kubernetes clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the management plane.
    Server(server::ServerArgs),
    /// Run an agent for one cluster (`flotilla agent --simulated` for an in-memory cluster).
    Agent(agent::AgentArgs),
    /// Start a server and a simulated fleet with example bundles, and print where to look.
    Demo(demo::DemoArgs),
    /// Simulate many clusters in this process, each making the real agent calls.
    Sim(sim::SimArgs),
    /// Run a load scenario against a real server and write result.json and report.html.
    Bench(bench::BenchArgs),
    /// Create or replace objects from files, folders or standard input (-).
    Apply(apply::ApplyArgs),
    /// Show what `apply -f` would change: the live objects against the server's dry run, as a
    /// unified diff of YAML (exit 0: no differences, 1: differences, 2: an error).
    Diff(diff::DiffArgs),
    /// List objects, or show the ones named (-o wide, name, json, yaml, jsonpath=TEMPLATE).
    Get(get::GetArgs),
    /// Show one object in detail.
    Describe(describe::DescribeArgs),
    /// Delete objects: by name, by label selector (-l), all (--all) or those files hold (-f).
    Delete(delete::DeleteArgs),
    /// Add, change (with --overwrite) or remove (`key-`) labels, like kubectl label.
    Label(label::LabelArgs),
    /// Render a folder offline as the server would for a GitRepo, and print what one cluster
    /// gets (raw YAML, Kustomize, Helm or fleet.yaml; before the agent's ownership labels).
    Render(render::RenderArgs),
    /// Read and steer a bundle's rollout: status (--watch), pause, resume, abort, undo.
    Rollout {
        #[command(subcommand)]
        command: rollout::RolloutCommand,
    },
    /// A bundle's revisions, newest first.
    History(history::HistoryArgs),
    /// Registration tokens.
    Token {
        #[command(subcommand)]
        command: token::TokenCommand,
    },
    /// This binary's version and commit, and the server's (`--client`: this binary's only).
    Version(version::VersionArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completion(completion::CompletionArgs),
    /// Describe a kind's fields, or one field's, from the API schema (like kubectl explain).
    Explain(explain::ExplainArgs),
    /// Edit an object in $EDITOR and send it back, refused if it changed meanwhile.
    Edit(edit::EditArgs),
}

fn main() -> std::process::ExitCode {
    flotilla_client::install_crypto_provider();
    let Cli { command } = Cli::parse();
    let quiet = !matches!(
        command,
        Command::Server(_) | Command::Agent(_) | Command::Demo(_)
    );
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLOTILLA_LOG").unwrap_or_else(|_| {
        // kube's HTTP layer logs every failed request at error level (a line per object per
        // pass while the Kubernetes API is down); the agent reports failures itself.
        tracing_subscriber::EnvFilter::new(if quiet {
            "warn,kube_client=off"
        } else {
            "info,kube_client=off"
        })
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: start async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error)
            if error
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            match error.downcast_ref::<rollout::RolloutFailed>() {
                Some(failed) => std::process::ExitCode::from(failed.exit_code),
                None => std::process::ExitCode::FAILURE,
            }
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Server(args) => server::run(args).await,
        Command::Agent(args) => agent::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Sim(args) => sim::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Apply(args) => apply::run(args).await,
        Command::Diff(args) => diff::run(args).await,
        Command::Get(args) => get::run(args).await,
        Command::Describe(args) => describe::run(args).await,
        Command::Delete(args) => delete::run(args).await,
        Command::Label(args) => label::run(args).await,
        Command::Render(args) => render::run(args),
        Command::Rollout { command } => rollout::run(command).await,
        Command::History(args) => history::run(args).await,
        Command::Token { command } => token::run(command).await,
        Command::Version(args) => version::run(args).await,
        Command::Completion(args) => {
            completion::run(args, &mut <Cli as clap::CommandFactory>::command())
        }
        Command::Explain(args) => explain::run(args),
        Command::Edit(args) => edit::run(args).await,
    }
}

/// SIGTERM or SIGINT (a second one exits at once); the handlers are installed when this is
/// called, so call it before starting what it stops.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    signals::stop_requested()
}

/// The whole command tree, for tests that walk it (every argument has help, `--sort` parses
/// what its help lists).
#[cfg(test)]
fn cli_command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
