//! The console summary a run ends with: one aligned row per target, in the order the targets
//! are numbered, with what it means, what was measured, the target and the verdict; notes
//! below. Colour only where a person reads it (a terminal, and no `NO_COLOR`).

use std::{collections::BTreeMap, ffi::OsStr, fmt::Write};

use crate::result::{BenchResult, Verdict};

/// How wide a column may grow before its text wraps onto the row's next line: the table stays
/// within ~150 columns, the width of a laptop terminal at a readable font.
const MEANING_WIDTH: usize = 44;
const MEASURED_WIDTH: usize = 48;
const TARGET_WIDTH: usize = 34;

/// Whether to colour the summary: on a terminal, unless `NO_COLOR` is set to anything but the
/// empty string (no-color.org).
pub fn colour_wanted(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// The outcome shown for a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pass,
    Fail,
    /// The run cannot judge it: below the scale the target is stated for, or too short.
    NotJudged,
}

impl Outcome {
    fn of(verdict: &Verdict) -> Outcome {
        match verdict.met {
            Some(true) => Outcome::Pass,
            Some(false) => Outcome::Fail,
            None => Outcome::NotJudged,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::NotJudged => "not judged",
        }
    }

    /// The word, green or red when colour is on; "not judged" stays plain (it is no failure).
    fn painted(self, colour: bool) -> String {
        match (self, colour) {
            (Outcome::Pass, true) => format!("\x1b[32m{}\x1b[0m", self.word()),
            (Outcome::Fail, true) => format!("\x1b[1;31m{}\x1b[0m", self.word()),
            _ => self.word().to_string(),
        }
    }
}

/// A target's meaning in one short line, for the table; the verdict's own `measure` (the
/// report's wording, longer) for an id this list does not know.
fn meaning(verdict: &Verdict) -> &str {
    match verdict.id.as_str() {
        "P1" => "steady fleet held (3 nodes, 4 bundles each)",
        "P2" => "server CPU per agent sync",
        "P3" => "registration rate, each durable",
        "P4" => "bundle change to 99% of clusters Ready",
        "P5" => "kill -9 until the whole fleet is served",
        "P6" => "server memory at steady state",
        "P7" => "admin API p99 under load",
        "P8" => "fleet held at a 30 s sync interval",
        "R1" => "rollout decision after the deciding report",
        "R2" => "later waves kept off a failed revision",
        "R3" => "failed canary back to stable, Ready",
        _ => &verdict.measure,
    }
}

/// `P2` before `P10`, and every `P` before every `R`.
fn numbered(id: &str) -> (String, u32, String) {
    let letters: String = id.chars().take_while(|c| !c.is_ascii_digit()).collect();
    let rest = &id[letters.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let number = digits.parse().unwrap_or(u32::MAX);
    (letters, number, rest[digits.len()..].to_string())
}

/// The text in lines of at most `width` characters, broken between words (a longer word is cut).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        while word.len() > width {
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            lines.push(word.drain(..width).collect());
        }
        let word: String = word.into_iter().collect();
        let needed = line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
        if needed > width && !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

fn pad(text: &str, width: usize) -> String {
    let mut padded = text.to_string();
    padded.extend(std::iter::repeat_n(
        ' ',
        width.saturating_sub(text.chars().count()),
    ));
    padded
}

/// The table (and its notes) for `result`'s verdicts; `colour` from [`colour_wanted`].
pub fn summary_table(result: &BenchResult, colour: bool) -> String {
    let mut verdicts: Vec<&Verdict> = result.verdicts.iter().collect();
    verdicts.sort_by_key(|verdict| numbered(&verdict.id));
    let headers = ["id", "meaning", "measured", "target", "verdict"];
    let limits = [usize::MAX, MEANING_WIDTH, MEASURED_WIDTH, TARGET_WIDTH];
    let cells: Vec<[Vec<String>; 4]> = verdicts
        .iter()
        .map(|verdict| {
            let texts = [
                verdict.id.as_str(),
                meaning(verdict),
                &verdict.measured,
                &verdict.target,
            ];
            std::array::from_fn(|column| wrap(texts[column], limits[column]))
        })
        .collect();
    let widths: [usize; 4] = std::array::from_fn(|column| {
        cells
            .iter()
            .flat_map(|row| row[column].iter())
            .map(|line| line.chars().count())
            .chain([headers[column].len()])
            .max()
            .unwrap_or(0)
    });
    let mut text = String::new();
    let line = |text: &mut String, columns: [&str; 4], last: &str| {
        let mut row = String::new();
        for (column, cell) in columns.iter().enumerate() {
            row.push_str(&pad(cell, widths[column]));
            row.push_str("  ");
        }
        row.push_str(last);
        let _ = writeln!(text, "{}", row.trim_end());
    };
    line(
        &mut text,
        [headers[0], headers[1], headers[2], headers[3]],
        headers[4],
    );
    let rule_width = widths.iter().sum::<usize>() + 2 * widths.len() + "not judged".len();
    let _ = writeln!(text, "{}", "-".repeat(rule_width));
    for (verdict, row) in verdicts.iter().zip(&cells) {
        let height = row.iter().map(Vec::len).max().unwrap_or(1);
        for index in 0..height {
            let part = |column: usize| row[column].get(index).map_or("", String::as_str);
            let last = if index == 0 {
                Outcome::of(verdict).painted(colour)
            } else {
                String::new()
            };
            line(&mut text, [part(0), part(1), part(2), part(3)], &last);
        }
    }
    // Notes, each once, after the ids it applies to.
    let mut notes: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut order = Vec::new();
    for verdict in &verdicts {
        if verdict.note.is_empty() {
            continue;
        }
        let ids = notes.entry(&verdict.note).or_default();
        if ids.is_empty() {
            order.push(verdict.note.as_str());
        }
        ids.push(&verdict.id);
    }
    for note in order {
        let _ = writeln!(text, "{}: {note}", notes[note].join(", "));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(id: &str, measured: &str, met: Option<bool>, note: &str) -> Verdict {
        Verdict {
            id: id.into(),
            measure: format!("what {id} measures"),
            target: "≤ 60 µs".into(),
            measured: measured.into(),
            met,
            note: note.into(),
        }
    }

    fn result(verdicts: Vec<Verdict>) -> BenchResult {
        serde_json::from_value(serde_json::json!({
            "scenario": "all", "command": "", "commit": "unknown", "startedAt": "",
            "machine": {"cores": 2, "memoryGib": 4.0, "cpuModel": "", "kernel": ""},
            "clusters": 10000, "bundlesPerCluster": 4, "nodesPerCluster": 3,
            "syncIntervalSeconds": 120.0, "serverSampled": true, "phases": [],
            "verdicts": verdicts, "samples": [],
        }))
        .unwrap()
    }

    fn column_of(line: &str, needle: &str) -> usize {
        line[..line.find(needle).unwrap()].chars().count()
    }

    #[test]
    fn rows_follow_the_target_numbers_and_columns_line_up() {
        let table = summary_table(
            &result(vec![
                verdict("R1", "0.2 s", Some(true), ""),
                verdict("P10", "a long measured value", Some(true), ""),
                verdict("P2", "12.5 µs", Some(true), ""),
            ]),
            false,
        );
        let lines: Vec<&str> = table.lines().collect();
        let ids: Vec<&str> = lines[2..5]
            .iter()
            .map(|line| line.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(ids, ["P2", "P10", "R1"]);
        // Every column starts at the header's column on every row.
        for (column, header) in ["meaning", "measured", "target", "verdict"]
            .into_iter()
            .enumerate()
        {
            let at = column_of(lines[0], header);
            for line in &lines[2..5] {
                let cell = line
                    .split("  ")
                    .map(str::trim)
                    .filter(|cell| !cell.is_empty())
                    .nth(column + 1)
                    .unwrap();
                assert_eq!(column_of(line, cell), at, "{header} in {line:?}\n{table}");
            }
        }
    }

    #[test]
    fn long_cells_wrap_inside_their_column() {
        let long = "1000 clusters for 10.0 min at a 120 s interval: 8 of 8 syncs/s asked answered, 0 errors, 0 Offline at the end";
        let table = summary_table(&result(vec![verdict("P1", long, Some(true), "")]), false);
        let lines: Vec<&str> = table.lines().collect();
        let at = column_of(lines[0], "measured");
        assert!(lines.len() > 3, "{table}");
        for line in &lines[3..] {
            assert!(line.chars().take(at).all(|c| c == ' '), "{line:?}");
            assert!(line.chars().count() <= at + MEASURED_WIDTH, "{line:?}");
        }
    }

    #[test]
    fn below_the_stated_scale_the_verdict_is_not_judged_and_plain() {
        let note = "the target is stated at 1,000,000 clusters; this run had 10000";
        let table = summary_table(
            &result(vec![
                verdict("P6", "700 MiB", None, note),
                verdict("P3", "9000 clusters/s", None, note),
            ]),
            true,
        );
        let rows: Vec<&str> = table.lines().skip(2).take(2).collect();
        for row in &rows {
            assert!(row.ends_with("not judged"), "{row:?}");
            assert!(!row.contains('\x1b'), "not judged is plain: {row:?}");
        }
        assert!(table.contains(&format!("P3, P6: {note}")), "{table}");
    }

    #[test]
    fn colour_marks_pass_and_fail_only_when_asked() {
        let verdicts = vec![
            verdict("P2", "12 µs", Some(true), ""),
            verdict("P4", "200 s", Some(false), ""),
        ];
        let coloured = summary_table(&result(verdicts.clone()), true);
        assert!(coloured.contains("\x1b[32mpass\x1b[0m"), "{coloured}");
        assert!(coloured.contains("\x1b[1;31mFAIL\x1b[0m"), "{coloured}");
        let plain = summary_table(&result(verdicts), false);
        assert!(!plain.contains('\x1b'), "{plain}");
        assert!(plain.contains("pass") && plain.contains("FAIL"), "{plain}");
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_wanted(true, None));
        assert!(!colour_wanted(false, None));
        assert!(!colour_wanted(true, Some(OsStr::new("1"))));
        assert!(colour_wanted(true, Some(OsStr::new(""))));
    }

    #[test]
    fn every_known_target_means_one_short_line() {
        for id in [
            "P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "R1", "R2", "R3",
        ] {
            let line = meaning(&verdict(id, "", None, "")).to_string();
            assert!(!line.starts_with("what"), "{id} has no meaning of its own");
            assert!(line.chars().count() <= MEANING_WIDTH, "{id}: {line}");
        }
    }
}
