//! The report's plots: one SVG per series group over time, drawn with plotters, that scales to
//! the page's width, marks the phases with labels that neither overlap nor leave the plot,
//! ticks counts in whole numbers, and keeps the steady part of a spiky series readable.

use plotters::{
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use crate::{result::Phase, sampler::Sample};

/// One line on a chart.
pub(crate) struct Line<'a> {
    pub label: &'a str,
    pub color: RGBColor,
    pub value: fn(&Sample) -> Option<f64>,
}

/// What the y axis counts: whole things (clusters, deployments) take whole-number ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Axis {
    Count,
    Measure,
}

/// One chart to draw.
pub(crate) struct ChartSpec<'a> {
    pub title: &'a str,
    pub unit: &'a str,
    pub axis: Axis,
    /// A phase whose values dwarf the rest of the run (registration's burst of requests): the
    /// y axis is chosen from the other phases, and the burst is drawn cut at the top and
    /// labelled with its peak.
    pub spike_phase: Option<&'a str>,
    pub lines: &'a [Line<'a>],
}

pub(crate) const BLUE_LINE: RGBColor = RGBColor(31, 119, 180);
pub(crate) const ORANGE_LINE: RGBColor = RGBColor(255, 127, 14);
pub(crate) const GREEN_LINE: RGBColor = RGBColor(44, 160, 44);
/// Phase lines and labels: darker than the grid, so a phase start does not read as a tick.
const PHASE_LINE: RGBColor = RGBColor(110, 110, 110);
const GRID_LINE: RGBColor = RGBColor(232, 232, 232);
const CLIPPED_NOTE: RGBColor = RGBColor(180, 80, 0);

/// The SVG's drawing size; the page scales it to its width (it keeps this aspect ratio).
const WIDTH: u32 = 1100;
const HEIGHT: u32 = 340;
const MARGIN: u32 = 12;
/// Room left of the plot for tick labels up to "1,000,000" and the axis description.
const Y_LABEL_AREA: u32 = 92;
const X_LABEL_AREA: u32 = 40;
/// Phase labels: 14 "points" of plotters (it writes them as 11.3 px), estimated 7 px a
/// character (sans-serif averages ~0.55 em; the estimate errs wide so that labels placed apart
/// stay apart), rows 16 px apart, 8 px between labels of a row, 3 px right of the phase's line.
const LABEL_FONT: u32 = 14;
/// Tick labels and notes, the same size.
const TEXT_FONT: u32 = 14;
const LABEL_CHAR_WIDTH: f64 = 7.0;
const LABEL_ROW_HEIGHT: u32 = 16;
const LABEL_GAP: f64 = 8.0;
const LABEL_OFFSET: f64 = 3.0;
/// A phase counts as a spike when its peak is more than this many times the rest's.
const SPIKE_RATIO: f64 = 1.5;

/// Where a phase label goes: its left edge in pixels from the plot's left, and its row (0 the
/// row nearest the plot).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PlacedLabel {
    pub left: f64,
    pub row: usize,
}

/// Places labels of `widths` pixels, each wanted just right of its `anchor` (pixels from the
/// plot's left, in increasing order), within a plot `plot_width` wide: pulled left where one
/// would pass the right edge, and moved up a row where it would overlap one already placed.
pub(crate) fn place_labels(labels: &[(f64, f64)], plot_width: f64) -> Vec<PlacedLabel> {
    // The right end of the last label in each row.
    let mut row_ends: Vec<f64> = Vec::new();
    labels
        .iter()
        .map(|&(anchor, width)| {
            let left = (anchor + LABEL_OFFSET).min(plot_width - width).max(0.0);
            let row = match row_ends.iter().position(|&end| left >= end + LABEL_GAP) {
                Some(row) => row,
                None => {
                    row_ends.push(f64::NEG_INFINITY);
                    row_ends.len() - 1
                }
            };
            row_ends[row] = left + width;
            PlacedLabel { left, row }
        })
        .collect()
}

/// Ticks from 0 past `max` at a round step (1, 2 or 5 times a power of ten), about five of
/// them; a count axis steps by whole numbers only.
pub(crate) fn ticks(max: f64, axis: Axis) -> Vec<f64> {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let rough = max / 5.0;
    let power = 10f64.powf(rough.log10().floor());
    let mut step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|factor| factor * power)
        .find(|&step| step >= rough)
        .unwrap_or(10.0 * power);
    if axis == Axis::Count {
        step = step.round().max(1.0);
    }
    let count = (max / step).ceil().max(1.0) as usize;
    (0..=count).map(|index| index as f64 * step).collect()
}

/// A tick's text: whole numbers with thousands separators, others with the decimals the
/// step needs.
fn tick_label(value: f64, step: f64) -> String {
    if step >= 1.0 && value.fract() == 0.0 {
        thousands(value as u64)
    } else {
        let decimals = (-step.log10()).ceil().max(1.0) as usize;
        format!("{value:.decimals$}")
    }
}

fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut text = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

fn label_width(text: &str) -> f64 {
    text.chars().count() as f64 * LABEL_CHAR_WIDTH
}

/// The y axis's top, and the spike's peak when the spike was cut.
fn y_range(spec: &ChartSpec, samples: &[Sample], phases: &[Phase]) -> (f64, Option<f64>) {
    let spike = spec
        .spike_phase
        .and_then(|name| phases.iter().find(|phase| phase.name == name));
    let values = |inside: Option<bool>| {
        samples
            .iter()
            .filter(move |sample| match (inside, spike) {
                (Some(inside), Some(phase)) => {
                    (sample.t >= phase.start && sample.t <= phase.end) == inside
                }
                _ => true,
            })
            .flat_map(|sample| spec.lines.iter().filter_map(|line| (line.value)(sample)))
            .fold(0.0_f64, f64::max)
    };
    let all = values(None);
    if spike.is_some() {
        let rest = values(Some(false));
        let peak = values(Some(true));
        if rest > 0.0 && peak > rest * SPIKE_RATIO {
            return (rest * 1.1, Some(peak));
        }
    }
    (all * 1.1, None)
}

/// The chart as an SVG element that fills its container's width.
pub(crate) fn chart(
    spec: &ChartSpec,
    samples: &[Sample],
    phases: &[Phase],
) -> anyhow::Result<String> {
    let x_max = samples.last().map_or(1.0, |sample| sample.t).max(1.0);
    let (y_wanted, clipped_peak) = y_range(spec, samples, phases);
    let y_ticks = ticks(y_wanted, spec.axis);
    let y_step = y_ticks.get(1).copied().unwrap_or(1.0);
    let y_max = y_ticks.last().copied().unwrap_or(1.0);

    // Phase labels, placed before the chart is built: their rows decide the top margin.
    let plot_left = f64::from(MARGIN + Y_LABEL_AREA);
    let plot_width = f64::from(WIDTH - 2 * MARGIN - Y_LABEL_AREA);
    let labelled: Vec<(f64, f64)> = phases
        .iter()
        .map(|phase| (phase.start / x_max * plot_width, label_width(&phase.name)))
        .collect();
    let placed = place_labels(&labelled, plot_width);
    let rows = placed.iter().map(|label| label.row + 1).max().unwrap_or(0) as u32;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        // The title above the phase labels' rows, which sit right above the plot.
        let titled = root
            .titled(spec.title, ("sans-serif", 22))
            .map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&titled)
            .margin(MARGIN)
            .margin_top(4 + rows * LABEL_ROW_HEIGHT)
            .x_label_area_size(X_LABEL_AREA)
            .y_label_area_size(Y_LABEL_AREA)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("seconds since start")
            .y_desc(spec.unit)
            .axis_desc_style(("sans-serif", TEXT_FONT))
            .x_label_style(("sans-serif", TEXT_FONT))
            .x_label_formatter(&|seconds| {
                if x_max >= 20.0 {
                    format!("{seconds:.0}")
                } else {
                    format!("{seconds:.1}")
                }
            })
            .y_labels(0)
            .disable_y_mesh()
            .bold_line_style(GRID_LINE.stroke_width(1))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(plot_error)?;
        let tick_style = ("sans-serif", TEXT_FONT)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Right, VPos::Center));
        for &tick in &y_ticks {
            if tick > 0.0 {
                chart
                    .draw_series(LineSeries::new(
                        [(0.0, tick), (x_max, tick)],
                        GRID_LINE.stroke_width(1),
                    ))
                    .map_err(plot_error)?;
            }
            let (x, y) = chart.backend_coord(&(0.0, tick));
            root.draw(&PathElement::new(vec![(x - 5, y), (x, y)], BLACK))
                .map_err(plot_error)?;
            root.draw(&Text::new(
                tick_label(tick, y_step),
                (x - 8, y),
                tick_style.clone(),
            ))
            .map_err(plot_error)?;
        }
        let plot_top = chart.backend_coord(&(0.0, y_max)).1;
        let label_style = ("sans-serif", LABEL_FONT)
            .into_font()
            .color(&PHASE_LINE)
            .pos(Pos::new(HPos::Left, VPos::Bottom));
        for (phase, label) in phases.iter().zip(&placed) {
            chart
                .draw_series(LineSeries::new(
                    [(phase.start, 0.0), (phase.start, y_max)],
                    PHASE_LINE.stroke_width(1),
                ))
                .map_err(plot_error)?;
            let x = (plot_left + label.left).round() as i32;
            let y = plot_top - 2 - (label.row as u32 * LABEL_ROW_HEIGHT) as i32;
            root.draw(&Text::new(phase.name.clone(), (x, y), label_style.clone()))
                .map_err(plot_error)?;
        }
        for line in spec.lines {
            let points: Vec<(f64, f64)> = samples
                .iter()
                .filter_map(|sample| Some((sample.t, (line.value)(sample)?.min(y_max))))
                .collect();
            if points.is_empty() {
                continue;
            }
            let color = line.color;
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(plot_error)?
                .label(line.label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        if let (Some(peak), Some(name)) = (clipped_peak, spec.spike_phase) {
            let note = format!(
                "{name}: cut at the top, peak {} {}; the axis fits the rest of the run",
                tick_label(peak.round(), 1.0),
                spec.unit
            );
            root.draw(&Text::new(
                note,
                (plot_left as i32 + 8, plot_top + 6),
                ("sans-serif", TEXT_FONT)
                    .into_font()
                    .color(&CLIPPED_NOTE)
                    .pos(Pos::new(HPos::Left, VPos::Top)),
            ))
            .map_err(plot_error)?;
        }
        chart
            .configure_series_labels()
            .label_font(("sans-serif", TEXT_FONT))
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(responsive(&svg))
}

/// The SVG scaled to its container's width, its aspect ratio kept by the viewBox.
fn responsive(svg: &str) -> String {
    svg.replacen(
        &format!("width=\"{WIDTH}\" height=\"{HEIGHT}\""),
        "width=\"100%\" style=\"display:block;height:auto\"",
        1,
    )
}

fn plot_error<E: std::fmt::Debug>(error: E) -> anyhow::Error {
    anyhow::anyhow!("draw a chart: {error:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_ticks_are_whole_numbers_however_small_the_count() {
        for max in [
            0.0,
            1.0,
            2.2,
            3.0,
            4.4,
            7.0,
            13.0,
            99.0,
            1234.0,
            1_000_000.0,
        ] {
            let ticks = ticks(max, Axis::Count);
            assert!(
                ticks.iter().all(|tick| tick.fract() == 0.0),
                "{max}: {ticks:?}"
            );
            assert!(*ticks.last().unwrap() >= max, "{max}: {ticks:?}");
            assert!(ticks.len() >= 2 && ticks.len() <= 12, "{max}: {ticks:?}");
        }
        assert_eq!(ticks(2.2, Axis::Count), [0.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn measure_ticks_may_step_below_one_at_a_round_step() {
        let ticks = ticks(0.44, Axis::Measure);
        assert_eq!(ticks.len(), 6, "{ticks:?}");
        assert!((ticks[1] - 0.1).abs() < 1e-12, "{ticks:?}");
        assert_eq!(tick_label(ticks[1], ticks[1]), "0.1");
        assert_eq!(tick_label(2_500_000.0, 500_000.0), "2,500,000");
    }

    fn assert_apart_and_inside(placed: &[PlacedLabel], labels: &[(f64, f64)], plot_width: f64) {
        for (index, (label, &(_, width))) in placed.iter().zip(labels).enumerate() {
            assert!(label.left >= 0.0, "{index}: {placed:?}");
            assert!(label.left + width <= plot_width, "{index}: {placed:?}");
            for (other, &(_, other_width)) in placed.iter().zip(labels).skip(index + 1) {
                if other.row == label.row {
                    let apart =
                        label.left + width <= other.left || other.left + other_width <= label.left;
                    assert!(apart, "{label:?} and {other:?} overlap");
                }
            }
        }
    }

    #[test]
    fn phase_labels_close_together_go_to_rows_of_their_own() {
        // register, converge, steady... with the first two phases a second apart.
        let labels: Vec<(f64, f64)> = [0.0, 4.0, 9.0, 500.0, 505.0, 980.0, 990.0]
            .iter()
            .map(|&anchor| (anchor, label_width("converge")))
            .collect();
        let placed = place_labels(&labels, 1000.0);
        assert_apart_and_inside(&placed, &labels, 1000.0);
        assert_eq!(placed[0].row, 0);
        assert_eq!(placed[1].row, 1);
        assert_eq!(placed[3].row, 0, "a label far on returns to the first row");
    }

    #[test]
    fn a_label_at_the_right_edge_is_pulled_inside_the_plot() {
        let labels = [
            (990.0, label_width("restart")),
            (999.0, label_width("rollback")),
        ];
        let placed = place_labels(&labels, 1000.0);
        assert_apart_and_inside(&placed, &labels, 1000.0);
        assert!(placed[1].left + labels[1].1 <= 1000.0);
    }

    #[test]
    fn many_random_labels_never_overlap_nor_leave_the_plot() {
        let mut anchor = 0.0;
        let mut labels = Vec::new();
        for index in 0..40u32 {
            anchor += f64::from(index * 37 % 23);
            labels.push((anchor.min(600.0), f64::from(30 + index * 13 % 70)));
        }
        let placed = place_labels(&labels, 600.0);
        assert_apart_and_inside(&placed, &labels, 600.0);
    }

    #[test]
    fn a_chart_fills_its_container_and_shows_no_fractional_counts() {
        let samples: Vec<Sample> = (0..10u32)
            .map(|second| Sample {
                t: f64::from(second),
                registered: u64::from(second.min(3)),
                ..Sample::default()
            })
            .collect();
        let phases = [Phase {
            name: "register".into(),
            start: 0.0,
            end: 3.0,
        }];
        let svg = chart(
            &ChartSpec {
                title: "Clusters",
                unit: "clusters",
                axis: Axis::Count,
                spike_phase: None,
                lines: &[Line {
                    label: "registered",
                    color: BLUE_LINE,
                    value: |s| Some(s.registered as f64),
                }],
            },
            &samples,
            &phases,
        )
        .unwrap();
        assert!(svg.starts_with("<svg width=\"100%\""), "{}", &svg[..120]);
        assert!(svg.contains(&format!("viewBox=\"0 0 {WIDTH} {HEIGHT}\"")));
        // plotters writes a text's content on a line of its own.
        assert!(svg.contains("\nregister\n"), "the phase is labelled");
        assert!(
            !svg.contains("\n2.5\n") && !svg.contains("\n0.5\n"),
            "fractional tick"
        );
        assert!(svg.contains("\n3\n"), "whole ticks");
    }

    #[test]
    fn a_registration_burst_is_cut_and_the_steady_rate_fills_the_axis() {
        let samples: Vec<Sample> = (0..100u32)
            .map(|second| Sample {
                t: f64::from(second),
                registrations_per_second: if second < 5 { 10_000.0 } else { 0.0 },
                syncs_per_second: if second < 5 { 5_000.0 } else { 80.0 },
                ..Sample::default()
            })
            .collect();
        let phases = [
            Phase {
                name: "register".into(),
                start: 0.0,
                end: 5.0,
            },
            Phase {
                name: "steady".into(),
                start: 5.5,
                end: 99.0,
            },
        ];
        let lines = [
            Line {
                label: "syncs/s",
                color: BLUE_LINE,
                value: |s| Some(s.syncs_per_second),
            },
            Line {
                label: "registrations/s",
                color: ORANGE_LINE,
                value: |s| Some(s.registrations_per_second),
            },
        ];
        let spec = ChartSpec {
            title: "Requests per second",
            unit: "per second",
            axis: Axis::Measure,
            spike_phase: Some("register"),
            lines: &lines,
        };
        let (top, peak) = y_range(&spec, &samples, &phases);
        assert!(top < 100.0, "{top}");
        assert_eq!(peak, Some(10_000.0));
        let svg = chart(&spec, &samples, &phases).unwrap();
        assert!(svg.contains("peak 10,000 per second"), "the cut is marked");
    }
}
