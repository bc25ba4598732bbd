//! Charts as server-rendered SVG: no script, no build step. Pure functions from numbers
//! to markup; every text in them is escaped here (the templates insert the SVG as-is).

use std::fmt::Write;

/// The palette, in series order (colour-blind friendly, Okabe–Ito).
const COLOURS: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#999999",
];

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One named row of values, one per bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub name: String,
    pub values: Vec<u64>,
}

/// A stacked bar chart: one bar per bucket (labelled under the axis every few bars),
/// series stacked in order with a legend. `id` names the chart for tests and styles
/// (`data-series` on each rect says which series and bucket it draws).
pub fn stacked_bars(id: &str, title: &str, labels: &[String], series: &[Series]) -> String {
    let (width, height) = (720.0_f64, 240.0_f64);
    let (left, right, top, bottom) = (44.0, 150.0, 24.0, 28.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let n = labels.len().max(1);
    let totals: Vec<u64> = (0..n)
        .map(|i| {
            series
                .iter()
                .map(|s| s.values.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let max = nice_max(totals.iter().copied().max().unwrap_or(0));
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{id}" viewBox="0 0 {width} {height}" role="img" aria-label="{title}"><title>{title}</title>"#,
        id = escape(id),
        title = escape(title),
    );
    // Grid and y labels: 0, max/2, max.
    for step in 0..=2 {
        let value = match step {
            0 => "0".to_string(),
            1 if max % 2 == 1 => format!("{:.1}", max as f64 / 2.0),
            1 => (max / 2).to_string(),
            _ => max.to_string(),
        };
        let y = top + plot_h - plot_h * step as f64 / 2.0;
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{x2}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{tx}" y="{ty:.1}" font-size="10" text-anchor="end">{value}</text>"##,
            x2 = left + plot_w,
            tx = left - 4.0,
            ty = y + 3.0,
        );
    }
    let slot = plot_w / n as f64;
    let bar = (slot * 0.8).max(1.0);
    let label_every = n.div_ceil(8).max(1);
    for i in 0..n {
        let x = left + slot * i as f64 + (slot - bar) / 2.0;
        let mut y = top + plot_h;
        for (k, s) in series.iter().enumerate() {
            let value = s.values.get(i).copied().unwrap_or(0);
            if value == 0 {
                continue;
            }
            let h = plot_h * value as f64 / max as f64;
            y -= h;
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bar:.1}" height="{h:.1}" fill="{colour}" data-series="{name}" data-bucket="{i}" data-value="{value}"><title>{name} {label}: {value}</title></rect>"#,
                colour = COLOURS[k % COLOURS.len()],
                name = escape(&s.name),
                label = escape(labels.get(i).map(String::as_str).unwrap_or("")),
            );
        }
        if i % label_every == 0 {
            let _ = write!(
                svg,
                r#"<text x="{tx:.1}" y="{ty}" font-size="10" text-anchor="middle">{label}</text>"#,
                tx = x + bar / 2.0,
                ty = height - 10.0,
                label = escape(labels.get(i).map(String::as_str).unwrap_or("")),
            );
        }
    }
    for (k, s) in series.iter().enumerate() {
        let y = top + 14.0 * k as f64;
        let total: u64 = s.values.iter().sum();
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="{y}" width="10" height="10" fill="{colour}"/><text x="{tx}" y="{ty}" font-size="11" class="legend">{name} ({total})</text>"#,
            x = width - right + 10.0,
            tx = width - right + 24.0,
            ty = y + 9.0,
            colour = COLOURS[k % COLOURS.len()],
            name = escape(&s.name),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Horizontal bars, one per (label, value), longest first as given.
pub fn hbars(id: &str, title: &str, rows: &[(String, u64)]) -> String {
    let width = 720.0_f64;
    let row_h = 20.0;
    let left = 220.0;
    let height = 8.0 + row_h * rows.len().max(1) as f64;
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{id}" viewBox="0 0 {width} {height}" role="img" aria-label="{title}"><title>{title}</title>"#,
        id = escape(id),
        title = escape(title),
    );
    for (i, (label, value)) in rows.iter().enumerate() {
        let y = 4.0 + row_h * i as f64;
        let w = (width - left - 60.0) * *value as f64 / max as f64;
        let _ = write!(
            svg,
            r#"<text x="{lx}" y="{ty:.1}" font-size="11" text-anchor="end">{label}</text><rect x="{left}" y="{y:.1}" width="{w:.1}" height="14" fill="{colour}" data-series="{label}" data-value="{value}"/><text x="{vx:.1}" y="{ty:.1}" font-size="11">{value}</text>"#,
            lx = left - 6.0,
            ty = y + 11.0,
            vx = left + w + 4.0,
            colour = COLOURS[0],
            label = escape(label),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A round axis maximum at or above `max` (1, 2, 5 × 10^k), at least 1.
fn nice_max(max: u64) -> u64 {
    let mut unit = 1;
    loop {
        for m in [1, 2, 5] {
            if max <= m * unit {
                return m * unit;
            }
        }
        unit = unit.saturating_mul(10);
        if unit == u64::MAX {
            return max;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(max: u64, expected: u64) {
        assert_eq!(nice_max(max), expected, "nice_max({max})");
    }

    #[test]
    fn axis_maxima_are_round() {
        for (max, expected) in [
            (0, 1),
            (1, 1),
            (2, 2),
            (3, 5),
            (7, 10),
            (10, 10),
            (11, 20),
            (999, 1000),
        ] {
            check(max, expected);
        }
    }

    #[test]
    fn bars_carry_their_series_and_values_and_text_is_escaped() {
        let svg = stacked_bars(
            "c",
            "<t>",
            &["10:00".into(), "10:01".into()],
            &[
                Series {
                    name: "defer".into(),
                    values: vec![3, 0],
                },
                Series {
                    name: "a\"&b".into(),
                    values: vec![1, 2],
                },
            ],
        );
        assert!(
            svg.contains(r#"data-series="defer" data-bucket="0" data-value="3""#),
            "{svg}"
        );
        assert!(
            !svg.contains(r#"data-series="defer" data-bucket="1""#),
            "zero bars are not drawn"
        );
        assert!(svg.contains("a&quot;&amp;b (3)"));
        assert!(svg.contains("&lt;t&gt;") && !svg.contains("<t>"));
    }
}
