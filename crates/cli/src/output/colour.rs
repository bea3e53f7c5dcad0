//! Colour for states (Ready green, Error red, Pending yellow, Offline grey) on a terminal only:
//! none when standard output is not a terminal, when `NO_COLOR` is set (to any value, even
//! empty) or when `TERM=dumb`, so piped and redirected output stays plain text.

use std::io::IsTerminal;

use anstyle::{AnsiColor, Style};

/// Whether printed text may carry colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colouring {
    On,
    Off,
}

impl Colouring {
    /// For what goes to standard output, judged from this process' terminal and environment.
    pub fn for_stdout() -> Colouring {
        Colouring::decide(
            std::io::stdout().is_terminal(),
            std::env::var_os("NO_COLOR").is_some(),
            std::env::var_os("TERM").is_some_and(|term| term == "dumb"),
        )
    }

    fn decide(terminal: bool, no_color: bool, dumb_terminal: bool) -> Colouring {
        if terminal && !no_color && !dumb_terminal {
            Colouring::On
        } else {
            Colouring::Off
        }
    }

    /// `text` in the colour of `state` (a state column's word), or as it is.
    pub fn state(self, text: &str) -> String {
        match (self, style_of(text)) {
            (Colouring::On, Some(style)) => format!("{style}{text}{style:#}"),
            _ => text.to_string(),
        }
    }
}

/// The colour of a state word of any kind: clusters, bundles, tokens, rollouts, waves.
fn style_of(state: &str) -> Option<Style> {
    let colour = match state {
        "Ready" | "Online" | "Active" | "Succeeded" | "Done" => AnsiColor::Green,
        "Error" | "Failed" | "RolledBack" | "Expired" => AnsiColor::Red,
        "Pending" | "Progressing" | "NotReady" | "Modified" | "Soaking" | "Waiting" => {
            AnsiColor::Yellow
        }
        "Offline" | "Paused" | "UsedUp" => AnsiColor::BrightBlack,
        _ => return None,
    };
    Some(colour.on_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color_or_a_dumb_term() {
        assert_eq!(Colouring::decide(true, false, false), Colouring::On);
        assert_eq!(Colouring::decide(false, false, false), Colouring::Off);
        assert_eq!(Colouring::decide(true, true, false), Colouring::Off);
        assert_eq!(Colouring::decide(true, false, true), Colouring::Off);
    }

    #[test]
    fn states_take_their_colour_and_other_words_stay_plain() {
        assert_eq!(Colouring::On.state("Ready"), "\u{1b}[32mReady\u{1b}[0m");
        assert_eq!(Colouring::On.state("Error"), "\u{1b}[31mError\u{1b}[0m");
        assert_eq!(Colouring::On.state("Pending"), "\u{1b}[33mPending\u{1b}[0m");
        assert_eq!(Colouring::On.state("Offline"), "\u{1b}[90mOffline\u{1b}[0m");
        assert_eq!(Colouring::On.state("basic-auth"), "basic-auth");
        assert_eq!(Colouring::Off.state("Ready"), "Ready");
    }
}
