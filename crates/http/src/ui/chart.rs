//! The activity chart: pulls per day by category, served beside denied, as an SVG drawn on the
//! server (no script, no image request). Each decision counts as what it was: a pull served in
//! a dry run that would have been denied is a dotted part of the served bar, never "allowed".
//! Colour is never the only carrier of meaning: denied bars are hatched, dry-run ones dotted,
//! every segment has a `<title>`, the legend names each colour, and the page shows the same
//! numbers as a table.

use std::collections::BTreeMap;
use std::fmt::Write;

use portcullis_core::model::ActivityRow;

use super::format;

/// A colour-blind-safe colour per category, in `Category::ALL`'s order (the drawing order).
const COLOURS: [&str; policy::Category::ALL.len()] = ["#0072B2", "#009E73", "#56B4E9", "#CC79A7", "#E69F00", "#D55E00"];
/// Entries with no category (or one this build does not know).
const UNKNOWN: (&str, &str) = ("Unknown", "#999999");

/// One day of the table under the chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    pub date: String,
    pub allowed: i64,
    /// Served in a dry run; would have been denied.
    pub would_deny: i64,
    pub denied: i64,
    /// `Community: 2 allowed, 1 denied; Docker Official: 5 allowed`.
    pub detail: String,
}

/// Pulls of one category on one day, by decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Count {
    allowed: i64,
    would_deny: i64,
    denied: i64,
}

fn label(key: &str) -> &str {
    match policy::Category::name_of(key) {
        Some(n) => n.short,
        None if key == "unknown" => UNKNOWN.0,
        None => key,
    }
}

fn colour(key: &str) -> &'static str {
    COLOURS.get(order(key)).copied().unwrap_or(UNKNOWN.1)
}

fn order(key: &str) -> usize {
    policy::Category::ALL.iter().position(|c| c.key == key).unwrap_or(COLOURS.len())
}

/// The y axis for a tallest bar of `peak`: its top and the step between ticks, both whole
/// numbers, the step round (1, 2, 5 × 10ⁿ), at most 5 steps: ticks 0, step, 2·step, … top.
fn axis(peak: i64) -> (i64, i64) {
    let peak = peak.max(1);
    let mut unit = 1;
    let step = loop {
        if let Some(m) = [1, 2, 5].into_iter().find(|m| m * unit * 5 >= peak) {
            break m * unit;
        }
        unit *= 10;
    };
    ((peak + step - 1) / step * step, step)
}

/// Counts by (day, category).
fn tally(rows: &[ActivityRow]) -> BTreeMap<(i64, usize, String), Count> {
    let mut t = BTreeMap::new();
    for r in rows {
        let e: &mut Count = t.entry((r.day, order(&r.category), r.category.clone())).or_default();
        match r.decision.as_str() {
            "denied" => e.denied += r.pulls,
            "would_deny" => e.would_deny += r.pulls,
            _ => e.allowed += r.pulls,
        }
    }
    t
}

/// A kind of bar segment: which count it shows, what it says, and its pattern over the colour.
type Segment = (fn(&Count) -> i64, &'static str, Option<&'static str>);

/// `2 allowed, 1 would be denied (dry run), 3 denied`.
fn describe(c: &Count) -> String {
    let parts = [(c.allowed, "allowed"), (c.would_deny, "would be denied (dry run)"), (c.denied, "denied")];
    parts.iter().filter(|(n, _)| *n > 0).map(|(n, what)| format!("{n} {what}")).collect::<Vec<_>>().join(", ")
}

/// The chart of the `days` days ending with `today` (days since the epoch), and its table.
pub fn render(rows: &[ActivityRow], today: i64, days: i64) -> (String, Vec<Day>) {
    let first = today - days + 1;
    let t = tally(rows);
    let mut table = Vec::new();
    let mut peak = 0;
    for day in first..=today {
        let cats: Vec<_> = t.range((day, 0, String::new())..(day + 1, 0, String::new())).collect();
        let allowed: i64 = cats.iter().map(|(_, v)| v.allowed).sum();
        let would_deny: i64 = cats.iter().map(|(_, v)| v.would_deny).sum();
        let denied: i64 = cats.iter().map(|(_, v)| v.denied).sum();
        peak = peak.max(allowed + would_deny).max(denied);
        let detail =
            cats.iter().map(|((_, _, k), c)| format!("{}: {}", label(k), describe(c))).collect::<Vec<_>>().join("; ");
        table.push(Day { date: format::date(day * 86_400), allowed, would_deny, denied, detail });
    }
    let (w, h, left, top, bottom) = (760.0, 300.0, 44.0, 16.0, 64.0);
    let plot_h = h - top - bottom;
    let slot = (w - left - 8.0) / days as f64;
    let bar = (slot - 10.0) / 2.0;
    let (max, step) = axis(peak);
    let y = |v: i64| top + plot_h - plot_h * v as f64 / max as f64;
    let total_a: i64 = table.iter().map(|d| d.allowed).sum();
    let total_w: i64 = table.iter().map(|d| d.would_deny).sum();
    let total_d: i64 = table.iter().map(|d| d.denied).sum();
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" class="chart" role="img" aria-labelledby="chart-title chart-desc"><title id="chart-title">Pulls per day for the last {days} days, allowed and denied, by category</title><desc id="chart-desc">Allowed pulls: {total_a}; served in a dry run but would be denied: {total_w}; denied pulls: {total_d}. The table below the chart lists every day.</desc><defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffffff" fill-opacity="0"/><line x1="0" y1="0" x2="0" y2="6" stroke="#1a1a1a" stroke-width="2"/></pattern><pattern id="dots" width="5" height="5" patternUnits="userSpaceOnUse"><circle cx="2.5" cy="2.5" r="1.2" fill="#1a1a1a"/></pattern></defs>"##
    );
    for v in (0..=max).step_by(step as usize) {
        let yy = y(v);
        let _ = write!(
            s,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#d0d0d0" stroke-width="1"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#333333">{v}</text>"##,
            w - 8.0,
            left - 6.0,
            yy + 4.0
        );
    }
    for (i, day) in (first..=today).enumerate() {
        let x0 = left + slot * i as f64 + 5.0;
        // The served bar (allowed, then dry-run would-denies dotted), and the denied one (hatched).
        let bars: [(f64, &[Segment]); 2] = [
            (
                x0,
                &[
                    (|c| c.allowed, "allowed", None),
                    (|c| c.would_deny, "served in a dry run, would be denied", Some("dots")),
                ],
            ),
            (x0 + bar, &[(|c| c.denied, "denied", Some("hatch"))]),
        ];
        for (x, parts) in bars {
            let mut acc = 0;
            for (count, what, pattern) in parts {
                for ((_, _, k), c) in t.range((day, 0, String::new())..(day + 1, 0, String::new())) {
                    let n = count(c);
                    if n == 0 {
                        continue;
                    }
                    let (y1, y0) = (y(acc + n), y(acc));
                    let _ = write!(
                        s,
                        r##"<rect x="{x:.1}" y="{y1:.1}" width="{bar:.1}" height="{:.1}" fill="{}"><title>{}: {n} {} {what}</title></rect>"##,
                        y0 - y1,
                        colour(k),
                        format::date(day * 86_400),
                        label(k)
                    );
                    if let Some(p) = pattern {
                        let _ = write!(
                            s,
                            r##"<rect x="{x:.1}" y="{y1:.1}" width="{bar:.1}" height="{:.1}" fill="url(#{p})" aria-hidden="true"/>"##,
                            y0 - y1
                        );
                    }
                    acc += n;
                }
            }
        }
        let date = format::date(day * 86_400);
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#333333">{}</text>"##,
            x0 + bar,
            top + plot_h + 14.0,
            &date[5..]
        );
    }
    let ly = h - 22.0;
    let mut lx = left;
    for (key, name) in policy::Category::ALL.iter().map(|c| (c.key, c.short)) {
        let _ = write!(
            s,
            r##"<rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{ly:.1}" font-size="11" fill="#333333">{name}</text>"##,
            ly - 10.0,
            colour(key),
            lx + 16.0
        );
        lx += 16.0 + name.len() as f64 * 6.4 + 14.0;
    }
    let _ = write!(
        s,
        r##"<rect x="{left}" y="{:.1}" width="12" height="12" fill="#bbbbbb"/><text x="{:.1}" y="{:.1}" font-size="11" fill="#333333">left bar: served</text><rect x="{:.1}" y="{:.1}" width="12" height="12" fill="#bbbbbb"/><rect x="{:.1}" y="{:.1}" width="12" height="12" fill="url(#dots)"/><text x="{:.1}" y="{:.1}" font-size="11" fill="#333333">dotted: dry run, would be denied</text><rect x="{:.1}" y="{:.1}" width="12" height="12" fill="#bbbbbb"/><rect x="{:.1}" y="{:.1}" width="12" height="12" fill="url(#hatch)"/><text x="{:.1}" y="{:.1}" font-size="11" fill="#333333">right bar, hatched: denied</text></svg>"##,
        ly + 4.0,
        left + 16.0,
        ly + 14.0,
        left + 120.0,
        ly + 4.0,
        left + 120.0,
        ly + 4.0,
        left + 136.0,
        ly + 14.0,
        left + 330.0,
        ly + 4.0,
        left + 330.0,
        ly + 4.0,
        left + 346.0,
        ly + 14.0
    );
    (s, table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(day: i64, category: &str, decision: &str, pulls: i64) -> ActivityRow {
        ActivityRow { day, category: category.into(), decision: decision.into(), pulls }
    }

    #[test]
    fn axis_ticks_are_whole_numbers_without_gaps() {
        let expected = [(1, 1), (1, 1), (3, 1), (5, 1), (8, 2), (10, 2), (15, 5), (300, 100)];
        assert_eq!([0, 1, 3, 5, 7, 10, 11, 260].map(axis), expected);
        let (svg, _) = render(&[row(100, "community", "allowed", 5)], 100, 14);
        let ticks: Vec<&str> =
            svg.match_indices("text-anchor=\"end\" fill=\"#333333\">").map(|(i, m)| &svg[i + m.len()..][..1]).collect();
        assert_eq!(ticks, ["0", "1", "2", "3", "4", "5"]);
    }

    #[test]
    fn chart_and_table_agree() {
        let rows = [
            row(100, "community", "denied", 3),
            row(100, "community", "allowed", 1),
            row(100, "official", "allowed", 5),
            row(101, "community", "would_deny", 2),
        ];
        let (svg, table) = render(&rows, 101, 14);
        assert_eq!(table.len(), 14);
        let d100 = &table[12];
        assert_eq!((d100.allowed, d100.would_deny, d100.denied), (6, 0, 3));
        assert_eq!(d100.detail, "Docker Official: 5 allowed; Community: 1 allowed, 3 denied");
        let d101 = &table[13];
        assert_eq!((d101.allowed, d101.would_deny), (0, 2), "a dry run's would-deny is not an allow");
        assert_eq!(d101.detail, "Community: 2 would be denied (dry run)");
        assert_eq!(svg.matches("fill=\"url(#hatch)\"").count(), 2, "one hatched denied segment plus the legend");
        assert_eq!(svg.matches("fill=\"url(#dots)\"").count(), 2, "one dotted dry-run segment plus the legend");
        assert!(svg.contains("<title>1970-04-11: 3 Community denied</title>"));
        assert!(svg.contains("<title>1970-04-12: 2 Community served in a dry run, would be denied</title>"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("Allowed pulls: 6; served in a dry run but would be denied: 2; denied pulls: 3."));
    }
}
