//! The activity chart: pulls per day by category, allowed beside denied, as an SVG drawn on the
//! server (no script, no image request). Colour is never the only carrier of meaning: denied
//! bars are hatched, every segment has a `<title>`, the legend names each colour, and the page
//! shows the same numbers as a table.

use std::collections::BTreeMap;
use std::fmt::Write;

use portcullis_core::model::ActivityRow;

use super::format;

/// Categories in drawing order, with their legend label and a colour-blind-safe colour.
const CATEGORIES: [(&str, &str, &str); 7] = [
    ("organization", "Organization", "#0072B2"),
    ("official", "Docker Official", "#009E73"),
    ("verified_publisher", "Verified Publisher", "#56B4E9"),
    ("sponsored_oss", "Sponsored OSS", "#CC79A7"),
    ("community", "Community", "#E69F00"),
    ("other_registry", "Other registry", "#D55E00"),
    ("unknown", "Unknown", "#999999"),
];

/// One day of the table under the chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    pub date: String,
    pub allowed: i64,
    pub denied: i64,
    /// `community: 2 allowed, 1 denied; official: 5 allowed`.
    pub detail: String,
}

fn label(key: &str) -> &str {
    CATEGORIES.iter().find(|c| c.0 == key).map(|c| c.1).unwrap_or(key)
}

fn colour(key: &str) -> &'static str {
    CATEGORIES.iter().find(|c| c.0 == key).map(|c| c.2).unwrap_or("#999999")
}

fn order(key: &str) -> usize {
    CATEGORIES.iter().position(|c| c.0 == key).unwrap_or(CATEGORIES.len())
}

/// A round axis maximum ≥ `max` (1, 2, 5 × 10ⁿ).
fn axis_max(max: i64) -> i64 {
    let mut step = 1;
    loop {
        for m in [1, 2, 5] {
            if m * step >= max.max(1) {
                return m * step;
            }
        }
        step *= 10;
    }
}

/// Counts by (day, category) → (allowed, denied); a dry-run's `would_deny` was served, so it
/// counts as allowed (the audit log tells them apart).
fn tally(rows: &[ActivityRow]) -> BTreeMap<(i64, usize, String), (i64, i64)> {
    let mut t = BTreeMap::new();
    for r in rows {
        let e = t.entry((r.day, order(&r.category), r.category.clone())).or_insert((0, 0));
        if r.decision == "denied" {
            e.1 += r.pulls;
        } else {
            e.0 += r.pulls;
        }
    }
    t
}

/// The chart of the `days` days ending with `today` (days since the epoch), and its table.
pub fn render(rows: &[ActivityRow], today: i64, days: i64) -> (String, Vec<Day>) {
    let first = today - days + 1;
    let t = tally(rows);
    let mut table = Vec::new();
    let mut peak = 0;
    for day in first..=today {
        let cats: Vec<_> = t.range((day, 0, String::new())..(day + 1, 0, String::new())).collect();
        let allowed: i64 = cats.iter().map(|(_, v)| v.0).sum();
        let denied: i64 = cats.iter().map(|(_, v)| v.1).sum();
        peak = peak.max(allowed).max(denied);
        let detail = cats
            .iter()
            .map(|((_, _, k), (a, d))| match (a, d) {
                (a, 0) => format!("{}: {a} allowed", label(k)),
                (0, d) => format!("{}: {d} denied", label(k)),
                (a, d) => format!("{}: {a} allowed, {d} denied", label(k)),
            })
            .collect::<Vec<_>>()
            .join("; ");
        table.push(Day { date: format::date(day * 86_400), allowed, denied, detail });
    }
    let (w, h, left, top, bottom) = (760.0, 300.0, 44.0, 16.0, 64.0);
    let plot_h = h - top - bottom;
    let slot = (w - left - 8.0) / days as f64;
    let bar = (slot - 10.0) / 2.0;
    let max = axis_max(peak);
    let y = |v: i64| top + plot_h - plot_h * v as f64 / max as f64;
    let total_a: i64 = table.iter().map(|d| d.allowed).sum();
    let total_d: i64 = table.iter().map(|d| d.denied).sum();
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" class="chart" role="img" aria-labelledby="chart-title chart-desc"><title id="chart-title">Pulls per day for the last {days} days, allowed and denied, by category</title><desc id="chart-desc">Allowed pulls: {total_a}; denied pulls: {total_d}. The table below the chart lists every day.</desc><defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffffff" fill-opacity="0"/><line x1="0" y1="0" x2="0" y2="6" stroke="#1a1a1a" stroke-width="2"/></pattern></defs>"##
    );
    for i in 0..=4 {
        let v = max * i / 4;
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
        for (j, denied) in [false, true].into_iter().enumerate() {
            let x = x0 + bar * j as f64;
            let mut acc = 0;
            for ((_, _, k), (a, d)) in t.range((day, 0, String::new())..(day + 1, 0, String::new())) {
                let n = if denied { *d } else { *a };
                if n == 0 {
                    continue;
                }
                let (y1, y0) = (y(acc + n), y(acc));
                let what = if denied { "denied" } else { "allowed" };
                let _ = write!(
                    s,
                    r##"<rect x="{x:.1}" y="{y1:.1}" width="{bar:.1}" height="{:.1}" fill="{}"><title>{}: {n} {} {what}</title></rect>"##,
                    y0 - y1,
                    colour(k),
                    format::date(day * 86_400),
                    label(k)
                );
                if denied {
                    let _ = write!(
                        s,
                        r##"<rect x="{x:.1}" y="{y1:.1}" width="{bar:.1}" height="{:.1}" fill="url(#hatch)" aria-hidden="true"/>"##,
                        y0 - y1
                    );
                }
                acc += n;
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
    for (key, name, _) in CATEGORIES.iter().filter(|c| c.0 != "unknown") {
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
        r##"<rect x="{left}" y="{:.1}" width="12" height="12" fill="#bbbbbb"/><text x="{:.1}" y="{:.1}" font-size="11" fill="#333333">left bar: allowed</text><rect x="{:.1}" y="{:.1}" width="12" height="12" fill="#bbbbbb"/><rect x="{:.1}" y="{:.1}" width="12" height="12" fill="url(#hatch)"/><text x="{:.1}" y="{:.1}" font-size="11" fill="#333333">right bar, hatched: denied</text></svg>"##,
        ly + 4.0,
        left + 16.0,
        ly + 14.0,
        left + 130.0,
        ly + 4.0,
        left + 130.0,
        ly + 4.0,
        left + 146.0,
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
    fn axis_is_round() {
        assert_eq!([0, 1, 3, 7, 10, 11, 260].map(axis_max), [1, 1, 5, 10, 10, 20, 500]);
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
        assert_eq!((d100.allowed, d100.denied), (6, 3));
        assert_eq!(d100.detail, "Docker Official: 5 allowed; Community: 1 allowed, 3 denied");
        assert_eq!(table[13].allowed, 2, "a dry run's would-deny was served");
        assert_eq!(svg.matches("fill=\"url(#hatch)\"").count(), 2, "one hatched denied segment plus the legend");
        assert!(svg.contains("<title>1970-04-11: 3 Community denied</title>"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("Allowed pulls: 8; denied pulls: 3."));
    }
}
