//! `flotilla rollout status|pause|resume|abort|undo BUNDLE`: read and steer a bundle's rollout,
//! as kubectl's `rollout` does a Deployment's. `status --watch` polls until the run ends and
//! turns its final phase into the exit code ([`watch_verdict`]).

use std::{io::IsTerminal, time::Duration};

use anyhow::Context;
use clap::{Args, Subcommand};
use flotilla_api::{Bundle, RolloutStatus, RolloutUndo, WaveStatus};
use flotilla_client::{Api, Error, RolloutVerb};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::{
    args::Connection,
    output::{self, Format},
};

/// Exit codes of `rollout status --watch`, in its help.
const WATCH_EXIT_CODES: &str = "Exit codes with --watch: 0 when the rollout Succeeded (or the \
bundle has none), 3 RolledBack, 4 Halted, 5 Frozen; 1 when the status cannot be read (e.g. no \
such bundle). Paused and RollingBack keep watching.";

/// Consecutive polls that may fail to reach the server before `--watch` gives up: a server
/// restart or a replica taking over the lease takes a few seconds, five polls at the default 2s
/// are ten.
const WATCH_TRANSIENT_FAILURES: u32 = 5;

#[derive(Subcommand)]
pub enum RolloutCommand {
    /// Show a bundle's rollout: phase, revisions, a row per wave, and why it stopped.
    #[command(after_help = WATCH_EXIT_CODES)]
    Status(StatusArgs),
    /// Start no more clusters (those updating carry on) until `rollout resume`.
    Pause(VerbArgs),
    /// Carry on a paused rollout (after `rollout pause` or a wave's `pauseAfter`).
    Resume(VerbArgs),
    /// Stop the rollout (it ends with reason Aborted).
    Abort(VerbArgs),
    /// Roll out an earlier revision again: the stable one before the current, or --to-revision.
    Undo(UndoArgs),
}

#[derive(Args)]
pub struct StatusArgs {
    /// The bundle's name.
    bundle: String,
    /// Poll until the rollout ends; the exit code says how it ended (see below).
    #[arg(short = 'w', long)]
    watch: bool,
    /// How often --watch asks the server.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Output format: the status as text, or its document as JSON or YAML.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    output: Format,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Args)]
pub struct VerbArgs {
    /// The bundle's name.
    bundle: String,
    /// `table` prints one line; `json` and `yaml` the rollout status after the change.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    output: Format,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Args)]
pub struct UndoArgs {
    /// The bundle's name.
    bundle: String,
    /// The revision to roll out (`flotilla history bundle NAME` lists them).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    to_revision: Option<u64>,
    /// `table` prints one line; `json` and `yaml` the rollout status after the change.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    output: Format,
    #[command(flatten)]
    connection: Connection,
}

pub async fn run(command: RolloutCommand) -> anyhow::Result<()> {
    match command {
        RolloutCommand::Status(StatusArgs {
            bundle,
            watch,
            interval,
            output,
            connection,
        }) => {
            let api = connection.admin()?.api::<Bundle>();
            if watch {
                return watch_rollout(&api, &bundle, interval, output).await;
            }
            let status = read_status(&api, &bundle).await?;
            output::print_rollout_status(&bundle, &status, output)
        }
        RolloutCommand::Pause(args) => steer(args, RolloutVerb::Pause).await,
        RolloutCommand::Resume(args) => steer(args, RolloutVerb::Resume).await,
        RolloutCommand::Abort(args) => steer(args, RolloutVerb::Abort).await,
        RolloutCommand::Undo(UndoArgs {
            bundle,
            to_revision,
            output,
            connection,
        }) => {
            let args = VerbArgs {
                bundle,
                output,
                connection,
            };
            steer(args, RolloutVerb::Undo(RolloutUndo { to_revision })).await
        }
    }
}

async fn read_status(api: &Api<Bundle>, bundle: &str) -> anyhow::Result<RolloutStatus> {
    api.rollout_status(bundle)
        .await
        .with_context(|| format!("read the rollout of bundle/{bundle}"))
}

async fn steer(args: VerbArgs, verb: RolloutVerb) -> anyhow::Result<()> {
    let VerbArgs {
        bundle,
        output,
        connection,
    } = args;
    let status = connection
        .admin()?
        .api::<Bundle>()
        .rollout(&bundle, &verb)
        .await
        .with_context(|| format!("{} the rollout of bundle/{bundle}", verb.as_str()))?;
    match output {
        Format::Table => output::out(&format!("{}\n", verb_line(&bundle, &verb, &status))),
        Format::Json | Format::Yaml => output::print_rollout_status(&bundle, &status, output),
    }
}

/// What a verb did, in a line: `bundle/web rollout paused (wave canary)`. The phase is named
/// when it is not the one the verb implies.
pub fn verb_line(bundle: &str, verb: &RolloutVerb, status: &RolloutStatus) -> String {
    let (done, implied_phase) = match verb {
        RolloutVerb::Pause => ("paused", Some("Paused")),
        RolloutVerb::Resume => ("resumed", Some("Progressing")),
        RolloutVerb::Abort => ("aborted", None),
        RolloutVerb::Undo(_) => ("undone", None),
    };
    let mut details = Vec::new();
    if !status.phase.is_empty() && implied_phase != Some(status.phase.as_str()) {
        details.push(status.phase.clone());
    }
    if let (RolloutVerb::Undo(_), Some(candidate)) = (verb, status.candidate_revision) {
        details.push(format!("revision {candidate}"));
    }
    if let Some(wave) = current_wave(status) {
        details.push(format!("wave {}", wave.name));
    }
    if details.is_empty() {
        format!("bundle/{bundle} rollout {done}")
    } else {
        format!("bundle/{bundle} rollout {done} ({})", details.join(", "))
    }
}

fn current_wave(status: &RolloutStatus) -> Option<&WaveStatus> {
    status
        .waves
        .get(usize::try_from(status.current_wave?).ok()?)
}

// -- watch -------------------------------------------------------------------------------------

/// How `rollout status --watch` goes on after reading a run's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchVerdict {
    /// The run is not over (Progressing, Paused, RollingBack, or a phase newer than this CLI).
    KeepWatching,
    /// The run succeeded, or the bundle has had none: exit 0.
    Succeeded,
    /// The run ended without the candidate everywhere: exit with this code.
    Failed { exit_code: u8 },
}

/// The verdict of a run's phase (exit codes in [`WATCH_EXIT_CODES`]).
pub fn watch_verdict(phase: &str) -> WatchVerdict {
    match phase {
        "Succeeded" | "" => WatchVerdict::Succeeded,
        "RolledBack" => WatchVerdict::Failed { exit_code: 3 },
        "Halted" => WatchVerdict::Failed { exit_code: 4 },
        "Frozen" => WatchVerdict::Failed { exit_code: 5 },
        _ => WatchVerdict::KeepWatching,
    }
}

/// A watched rollout ended in a phase other than Succeeded; `main` exits with `exit_code`.
#[derive(Debug)]
pub struct RolloutFailed {
    pub bundle: String,
    pub phase: String,
    pub exit_code: u8,
}

impl std::fmt::Display for RolloutFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bundle/{} rollout ended {} (see its reason above)",
            self.bundle, self.phase
        )
    }
}

impl std::error::Error for RolloutFailed {}

/// Whether two reads of a run differ in more than the soak countdown (which moves on every
/// read): what `--watch` prints again for.
pub fn progress_changed(before: &RolloutStatus, after: &RolloutStatus) -> bool {
    fn without_countdown(status: &RolloutStatus) -> RolloutStatus {
        let mut status = status.clone();
        for wave in &mut status.waves {
            wave.soak_remaining_seconds = None;
        }
        status
    }
    without_countdown(before) != without_countdown(after)
}

/// Whether a failed read may succeed on the next poll: no answer, or the server is restarting
/// or handing over (5xx).
fn transient(error: &Error) -> bool {
    match error {
        Error::Connect { .. } | Error::Read(_) => true,
        Error::Api { status, .. } => status.is_server_error(),
        Error::Decode { .. } | Error::Request(_) => false,
    }
}

async fn watch_rollout(
    api: &Api<Bundle>,
    bundle: &str,
    interval: Duration,
    format: Format,
) -> anyhow::Result<()> {
    let mut view = WatchView::new(format);
    let mut last: Option<RolloutStatus> = None;
    let mut failures = 0;
    loop {
        match api.rollout_status(bundle).await {
            Ok(status) => {
                failures = 0;
                let changed = last
                    .as_ref()
                    .is_none_or(|last| progress_changed(last, &status));
                view.show(bundle, &status, changed)?;
                match watch_verdict(&status.phase) {
                    WatchVerdict::KeepWatching => {}
                    WatchVerdict::Succeeded => return view.finish(bundle, &status),
                    WatchVerdict::Failed { exit_code } => {
                        view.finish(bundle, &status)?;
                        return Err(RolloutFailed {
                            bundle: bundle.to_string(),
                            phase: status.phase,
                            exit_code,
                        }
                        .into());
                    }
                }
                last = Some(status);
            }
            Err(error) if transient(&error) && failures < WATCH_TRANSIENT_FAILURES => {
                failures += 1;
                view.warn(&format!(
                    "read the rollout of bundle/{bundle}: {error}; retrying"
                ));
            }
            Err(error) => {
                return Err(error).with_context(|| format!("read the rollout of bundle/{bundle}"));
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// How `--watch` shows each read: progress bars on a terminal, a line per change otherwise, or
/// a document per change for `-o json|yaml`.
enum WatchView {
    Bars(Bars),
    Lines,
    Documents { format: Format, printed: usize },
}

impl WatchView {
    fn new(format: Format) -> WatchView {
        match format {
            Format::Table if std::io::stderr().is_terminal() => WatchView::Bars(Bars::new()),
            Format::Table => WatchView::Lines,
            Format::Json | Format::Yaml => WatchView::Documents { format, printed: 0 },
        }
    }

    fn show(&mut self, bundle: &str, status: &RolloutStatus, changed: bool) -> anyhow::Result<()> {
        match self {
            // Redrawn on every read: the soak countdown moves.
            WatchView::Bars(bars) => {
                bars.update(bundle, status);
                Ok(())
            }
            WatchView::Lines if changed => output::out(&format!(
                "{}\n",
                output::rollout_progress_line(bundle, status)
            )),
            WatchView::Documents { format, printed } if changed => {
                // YAML documents in one stream are separated by `---`.
                if *format == Format::Yaml && *printed > 0 {
                    output::out("---\n")?;
                }
                *printed += 1;
                output::print_rollout_status(bundle, status, *format)
            }
            WatchView::Lines | WatchView::Documents { .. } => Ok(()),
        }
    }

    /// The run ended: the full status after the lines or bars (its last document was shown).
    fn finish(self, bundle: &str, status: &RolloutStatus) -> anyhow::Result<()> {
        match self {
            WatchView::Bars(bars) => {
                bars.clear();
                output::print_rollout_status(bundle, status, Format::Table)
            }
            WatchView::Lines => {
                output::out("\n")?;
                output::print_rollout_status(bundle, status, Format::Table)
            }
            WatchView::Documents { .. } => Ok(()),
        }
    }

    fn warn(&self, message: &str) {
        match self {
            WatchView::Bars(bars) => bars.all.suspend(|| eprintln!("warning: {message}")),
            WatchView::Lines | WatchView::Documents { .. } => eprintln!("warning: {message}"),
        }
    }
}

/// A line for the run and a bar per wave (done of clusters), on standard error.
struct Bars {
    all: MultiProgress,
    header: ProgressBar,
    waves: Vec<(String, ProgressBar)>,
    style: ProgressStyle,
}

impl Bars {
    fn new() -> Bars {
        let all = MultiProgress::new();
        let header = all.add(ProgressBar::new_spinner());
        header.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        let style = ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        Bars {
            all,
            header,
            waves: Vec::new(),
            style,
        }
    }

    fn update(&mut self, bundle: &str, status: &RolloutStatus) {
        self.header
            .set_message(output::rollout_progress_line(bundle, status));
        self.header.tick();
        let same_waves = self.waves.len() == status.waves.len()
            && self
                .waves
                .iter()
                .zip(&status.waves)
                .all(|((name, _), wave)| *name == wave.name);
        if !same_waves {
            // A new run (a newer revision superseded the watched one) may have other waves.
            for (_, bar) in self.waves.drain(..) {
                bar.finish_and_clear();
                self.all.remove(&bar);
            }
            for wave in &status.waves {
                let bar = self.all.add(ProgressBar::new(wave.clusters));
                bar.set_style(self.style.clone());
                bar.set_prefix(wave.name.clone());
                self.waves.push((wave.name.clone(), bar));
            }
        }
        for ((_, bar), wave) in self.waves.iter().zip(&status.waves) {
            bar.set_length(wave.clusters);
            bar.set_position(wave.done);
            bar.set_message(wave_message(wave));
        }
    }

    fn clear(self) {
        for (_, bar) in &self.waves {
            bar.finish_and_clear();
        }
        self.header.finish_and_clear();
        let _ = self.all.clear();
    }
}

/// A wave's bar message: `Soaking, 3 ready, 1 failed, soak 25s left`.
fn wave_message(wave: &WaveStatus) -> String {
    let mut message = format!("{}, {} ready", wave.phase, wave.ready);
    if wave.failed > 0 {
        message.push_str(&format!(", {} failed", wave.failed));
    }
    if let Some(seconds) = wave.soak_remaining_seconds {
        message.push_str(&format!(", soak {} left", output::seconds_text(seconds)));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(phase: &str, current_wave: Option<u32>) -> RolloutStatus {
        RolloutStatus {
            phase: phase.into(),
            stable_revision: 3,
            candidate_revision: Some(4),
            current_wave,
            waves: vec![
                WaveStatus {
                    name: "canary".into(),
                    phase: "Done".into(),
                    clusters: 2,
                    ..WaveStatus::default()
                },
                WaveStatus {
                    name: "rest".into(),
                    phase: "Progressing".into(),
                    clusters: 10,
                    soak_remaining_seconds: Some(30),
                    ..WaveStatus::default()
                },
            ],
            ..RolloutStatus::default()
        }
    }

    #[test]
    fn watch_exits_zero_only_on_success_and_keeps_watching_unfinished_runs() {
        assert_eq!(watch_verdict("Succeeded"), WatchVerdict::Succeeded);
        assert_eq!(watch_verdict(""), WatchVerdict::Succeeded);
        assert_eq!(
            watch_verdict("RolledBack"),
            WatchVerdict::Failed { exit_code: 3 }
        );
        assert_eq!(
            watch_verdict("Halted"),
            WatchVerdict::Failed { exit_code: 4 }
        );
        assert_eq!(
            watch_verdict("Frozen"),
            WatchVerdict::Failed { exit_code: 5 }
        );
        for unfinished in ["Progressing", "Paused", "RollingBack", "SomethingNewer"] {
            assert_eq!(
                watch_verdict(unfinished),
                WatchVerdict::KeepWatching,
                "{unfinished}"
            );
        }
    }

    #[test]
    fn watch_exit_codes_stay_clear_of_generic_failure_and_usage_errors() {
        // 1 is any error (main), 2 is clap's usage error: a script must tell them apart.
        for phase in ["RolledBack", "Halted", "Frozen"] {
            let WatchVerdict::Failed { exit_code } = watch_verdict(phase) else {
                panic!("{phase} must fail the watch");
            };
            assert!(exit_code > 2, "{phase}: {exit_code}");
            assert!(
                WATCH_EXIT_CODES.contains(&format!("{exit_code} {phase}")),
                "help must name {exit_code} {phase}"
            );
        }
    }

    #[test]
    fn the_soak_countdown_alone_is_not_a_change_worth_printing() {
        let before = status("Progressing", Some(1));
        let mut after = before.clone();
        after.waves[1].soak_remaining_seconds = Some(28);
        assert!(!progress_changed(&before, &after));
        after.waves[1].done = 1;
        assert!(progress_changed(&before, &after));
        assert!(progress_changed(&before, &status("Paused", Some(1))));
    }

    #[test]
    fn a_verb_line_names_the_wave_and_a_phase_the_verb_does_not_imply() {
        assert_eq!(
            verb_line("web", &RolloutVerb::Pause, &status("Paused", Some(0))),
            "bundle/web rollout paused (wave canary)"
        );
        assert_eq!(
            verb_line("web", &RolloutVerb::Resume, &status("Progressing", Some(1))),
            "bundle/web rollout resumed (wave rest)"
        );
        assert_eq!(
            verb_line("web", &RolloutVerb::Abort, &status("RollingBack", None)),
            "bundle/web rollout aborted (RollingBack)"
        );
        let undo = RolloutVerb::Undo(RolloutUndo {
            to_revision: Some(4),
        });
        assert_eq!(
            verb_line("web", &undo, &status("Progressing", Some(0))),
            "bundle/web rollout undone (Progressing, revision 4, wave canary)"
        );
        assert_eq!(
            verb_line("web", &RolloutVerb::Pause, &status("Paused", Some(9))),
            "bundle/web rollout paused",
            "a wave index past the list names no wave"
        );
    }

    #[test]
    fn only_reads_that_may_succeed_next_poll_are_retried() {
        let refused = |status: u16| Error::Api {
            status: reqwest::StatusCode::from_u16(status).unwrap(),
            reason: None,
            message: String::new(),
        };
        assert!(transient(&refused(503)));
        assert!(!transient(&refused(404)));
        assert!(!transient(&refused(401)));
        assert!(!transient(&Error::Request("bad".into())));
    }
}
