//! `flotilla completion SHELL`: the shell completion script for this binary's commands and
//! flags, generated from the same clap definition that parses them (so it cannot go stale).
//!
//! bash: `source <(flotilla completion bash)`; zsh: `flotilla completion zsh > "${fpath[1]}/_flotilla"`;
//! fish: `flotilla completion fish > ~/.config/fish/completions/flotilla.fish`.

use clap::Args;
use clap_complete::Shell;

#[derive(Args)]
pub struct CompletionArgs {
    /// bash, zsh, fish, powershell or elvish.
    #[arg(value_enum)]
    shell: Shell,
}

/// Writes the script for `command` (the whole CLI) to standard output.
pub fn run(args: CompletionArgs, command: &mut clap::Command) -> anyhow::Result<()> {
    let CompletionArgs { shell } = args;
    let name = command.get_name().to_string();
    let mut script = Vec::new();
    clap_complete::generate(shell, command, name, &mut script);
    crate::output::out(&String::from_utf8_lossy(&script))
}
