//! Charts drawn on the server as SVG text: a state timeline (one row per machine), a trend of ratios by
//! bucket, a Pareto of downtime reasons and a waterfall of the six big losses. Pure: values in, markup out.
//!
//! Every shape carries its details as an SVG `<title>`, which browsers show on hover without any script.
//! Coordinates are whole units (or one decimal) of a fixed `viewBox`, and a timeline folds what is shorter
//! than a column into the column's main state, so a month of fifty machines stays a few tens of kilobytes.
//! Colours are presentation attributes (`fill="#…"`), which the pages' policy allows (no `style=`).

use std::fmt::Write;

/// The plot's width in `viewBox` units.
const PLOT_W: f64 = 1000.0;
/// Room left of the plot for row labels and the value axis.
const LEFT: f64 = 170.0;
/// Below this many shapes a timeline draws one rectangle per stretch with its own title; above it, one path
/// per machine and code.
const DETAIL_SHAPES: usize = 1000;
/// The most stretches a timeline draws as paths before it halves its columns.
const PATH_SHAPES: usize = 6000;

/// `text` made safe inside SVG text and attribute values.
pub(crate) fn esc(text: &str) -> String {
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

/// A number with at most one decimal and no trailing `.0` (short markup).
fn num(x: f64) -> String {
    let r = (x * 10.0).round() / 10.0;
    if r == r.trunc() { format!("{}", r as i64) } else { format!("{r:.1}") }
}

/// A colour from the database as a fill: `#RRGGBB`, or grey for anything else.
pub(crate) fn fill(colour: &str) -> String {
    match oee_core::store::code::normalise_colour(colour) {
        Ok(c) => c,
        Err(_) => "#999999".into(),
    }
}

/// One stretch of a timeline row: where it lies (fractions of the axis, 0 to 1), its key (the code),
/// colour, name and hover text.
#[derive(Debug, Clone)]
pub(crate) struct Stretch {
    pub from: f64,
    pub to: f64,
    pub key: i32,
    pub colour: String,
    pub name: String,
    pub title: String,
}

/// One row of a timeline: a label and its stretches, in time order.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub label: String,
    pub stretches: Vec<Stretch>,
}

/// A run of whole columns of one key.
#[derive(Debug, Clone, PartialEq)]
struct Run {
    c0: usize,
    c1: usize,
    key: i32,
}

/// The row cut into `cols` columns, each given to the key that covers most of it (when at least half of
/// the column is covered), and neighbouring columns of one key merged.
fn runs(stretches: &[Stretch], cols: usize) -> Vec<Run> {
    let mut cover: Vec<Vec<(i32, f64)>> = vec![Vec::new(); cols];
    let n = cols as f64;
    for s in stretches {
        let (a, b) = (s.from.clamp(0.0, 1.0) * n, s.to.clamp(0.0, 1.0) * n);
        if b <= a {
            continue;
        }
        let first = a.floor() as usize;
        let last = (b.ceil() as usize).min(cols);
        for (c, column) in cover.iter_mut().enumerate().take(last).skip(first) {
            let part = b.min(c as f64 + 1.0) - a.max(c as f64);
            if part <= 0.0 {
                continue;
            }
            match column.iter_mut().find(|(k, _)| *k == s.key) {
                Some((_, v)) => *v += part,
                None => column.push((s.key, part)),
            }
        }
    }
    let mut out: Vec<Run> = Vec::new();
    for (c, column) in cover.iter().enumerate() {
        let total: f64 = column.iter().map(|(_, v)| v).sum();
        let main = column.iter().fold(None::<(i32, f64)>, |best, &(k, v)| match best {
            Some((_, bv)) if bv >= v => best,
            _ => Some((k, v)),
        });
        let Some((key, _)) = main.filter(|_| total >= 0.5) else { continue };
        match out.last_mut() {
            Some(r) if r.key == key && r.c1 == c => r.c1 = c + 1,
            _ => out.push(Run { c0: c, c1: c + 1, key }),
        }
    }
    out
}

/// A state timeline: one row per machine, coloured by code, a tick label under the plot at each
/// `(fraction, text)` of `ticks`; `at` tells the time at a fraction of the axis (for the titles of merged
/// runs). When the stretches are few enough each run has its own title (a single activity's full
/// details); otherwise each machine's code is one path whose title sums it up.
pub(crate) fn timeline(rows: &[Row], ticks: &[(f64, String)], at: impl Fn(f64) -> String) -> String {
    const ROW_H: f64 = 18.0;
    const GAP: f64 = 4.0;
    let mut cols = 1000;
    let mut all: Vec<Vec<Run>> = rows.iter().map(|r| runs(&r.stretches, cols)).collect();
    let mut count: usize = all.iter().map(Vec::len).sum();
    let detailed = count <= DETAIL_SHAPES;
    while !detailed && count > PATH_SHAPES && cols > 125 {
        cols /= 2;
        all = rows.iter().map(|r| runs(&r.stretches, cols)).collect();
        count = all.iter().map(Vec::len).sum();
    }
    let col_w = PLOT_W / cols as f64;
    let plot_h = rows.len() as f64 * (ROW_H + GAP);
    let height = plot_h + 60.0;
    let width = LEFT + PLOT_W + 10.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg class="chart timeline-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" role="img" aria-label="State timeline" font-size="11" font-family="sans-serif"><rect x="{LEFT}" y="0" width="{PLOT_W}" height="{ph}" fill="#f4f4f4"/>"##,
        w = num(width),
        h = num(height),
        ph = num(plot_h),
    );
    let mut legend: Vec<(i32, String, String)> = Vec::new();
    for (i, (row, runs)) in rows.iter().zip(&all).enumerate() {
        let y = i as f64 * (ROW_H + GAP);
        let _ = write!(
            svg,
            r#"<text x="{lx}" y="{ty}" text-anchor="end">{label}</text>"#,
            lx = num(LEFT - 6.0),
            ty = num(y + ROW_H - 5.0),
            label = esc(&row.label)
        );
        for s in &row.stretches {
            if !legend.iter().any(|(k, _, _)| *k == s.key) {
                legend.push((s.key, s.name.clone(), s.colour.clone()));
            }
        }
        // The stretches of a run's key that overlap it, found with a pointer that only moves forward.
        let mut first = 0;
        let mut members = |r: &Run| -> Vec<&Stretch> {
            let (a, b) = (r.c0 as f64 / cols as f64, r.c1 as f64 / cols as f64);
            while first < row.stretches.len() && row.stretches[first].to <= a {
                first += 1;
            }
            row.stretches[first..].iter().take_while(|s| s.from < b).filter(|s| s.key == r.key && s.to > a).collect()
        };
        if detailed {
            for r in runs {
                let m = members(r);
                let title = match m.as_slice() {
                    [one] => one.title.clone(),
                    _ => {
                        let name = m.first().map_or("", |s| s.name.as_str());
                        let (a, b) = (r.c0 as f64 / cols as f64, r.c1 as f64 / cols as f64);
                        format!("{name}: {} activities, {} to {} (zoom in for each)", m.len(), at(a), at(b))
                    }
                };
                let colour = m.first().map_or_else(|| "#999999".to_string(), |s| s.colour.clone());
                let _ = write!(
                    svg,
                    r#"<rect x="{x}" y="{y}" width="{w}" height="{ROW_H}" fill="{colour}"><title>{t}</title></rect>"#,
                    x = num(LEFT + r.c0 as f64 * col_w),
                    y = num(y),
                    w = num((r.c1 - r.c0) as f64 * col_w),
                    t = esc(&format!("{} · {title}", row.label)),
                );
            }
        } else {
            let mut keys: Vec<i32> = runs.iter().map(|r| r.key).collect();
            keys.sort_unstable();
            keys.dedup();
            for key in keys {
                let Some((_, name, colour)) = legend.iter().find(|(k, _, _)| *k == key) else { continue };
                let mut d = String::new();
                let mut n = 0;
                for r in runs.iter().filter(|r| r.key == key) {
                    let w = num((r.c1 - r.c0) as f64 * col_w);
                    let _ = write!(d, "M{}{}h{w}v{ROW_H}h-{w}z", num(LEFT + r.c0 as f64 * col_w), num(y));
                    n += 1;
                }
                let _ = write!(
                    svg,
                    r#"<path fill="{colour}" d="{d}"><title>{t}</title></path>"#,
                    t = esc(&format!("{} · {name}: {n} stretches (zoom in for each activity)", row.label))
                );
            }
        }
    }
    for (f, label) in ticks {
        let x = num(LEFT + f * PLOT_W);
        let _ = write!(
            svg,
            r##"<line x1="{x}" y1="0" x2="{x}" y2="{ph}" stroke="#ffffff" stroke-width="1"/><text x="{x}" y="{ty}" text-anchor="middle">{l}</text>"##,
            ph = num(plot_h),
            ty = num(plot_h + 14.0),
            l = esc(label)
        );
    }
    let mut lx = LEFT;
    for (_, name, colour) in &legend {
        let ly = plot_h + 30.0;
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="{y}" width="12" height="12" fill="{colour}"/><text x="{tx}" y="{ty}">{n}</text>"#,
            x = num(lx),
            y = num(ly),
            tx = num(lx + 16.0),
            ty = num(ly + 10.0),
            n = esc(name)
        );
        lx += 24.0 + 7.0 * name.chars().count() as f64;
    }
    svg.push_str("</svg>");
    svg
}

/// One bucket of a trend: its tick label, hover heading and ratios (0 to 1; `None` when undefined).
#[derive(Debug, Clone)]
pub(crate) struct TrendPoint {
    pub label: String,
    pub title: String,
    pub availability: Option<f64>,
    pub performance: Option<f64>,
    pub quality: Option<f64>,
    pub oee: Option<f64>,
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "–".into(), |x| format!("{:.1}%", x * 100.0))
}

/// OEE as bars and availability, performance and quality as lines, one step per bucket; the value axis
/// runs to 100 %, or higher when performance went over.
pub(crate) fn trend(points: &[TrendPoint]) -> String {
    const H: f64 = 260.0;
    let top = points.iter().filter_map(|p| p.performance).fold(1.0_f64, f64::max).clamp(1.0, 2.0);
    let y = |v: f64| H - v.min(top) / top * H;
    let step = PLOT_W / points.len().max(1) as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg class="chart trend-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" role="img" aria-label="OEE trend" font-size="11" font-family="sans-serif"><rect x="{LEFT}" y="0" width="{PLOT_W}" height="{H}" fill="#f4f4f4"/>"##,
        w = num(LEFT + PLOT_W + 10.0),
        h = num(H + 60.0)
    );
    let mut grid = 0.0;
    while grid <= top + 1e-9 {
        let gy = num(y(grid));
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{gy}" x2="{x2}" y2="{gy}" stroke="#dddddd"/><text x="{tx}" y="{gy}" text-anchor="end">{v}%</text>"##,
            x2 = num(LEFT + PLOT_W),
            tx = num(LEFT - 6.0),
            v = num(grid * 100.0)
        );
        grid += 0.25;
    }
    let label_every = (points.len() / 15).max(1);
    for (i, p) in points.iter().enumerate() {
        let x0 = LEFT + i as f64 * step;
        if let Some(o) = p.oee {
            let _ = write!(
                svg,
                r##"<rect class="oee-bar" x="{x}" y="{y}" width="{w}" height="{h}" fill="#ad1920" fill-opacity="0.35"><title>{t}</title></rect>"##,
                x = num(x0 + step * 0.15),
                y = num(y(o)),
                w = num(step * 0.7),
                h = num(H - y(o)),
                t = esc(&format!(
                    "{}: OEE {}, availability {}, performance {}, quality {}",
                    p.title,
                    pct(p.oee),
                    pct(p.availability),
                    pct(p.performance),
                    pct(p.quality)
                ))
            );
        }
        if i % label_every == 0 {
            let _ = write!(
                svg,
                r#"<text x="{x}" y="{ty}" text-anchor="middle">{l}</text>"#,
                x = num(x0 + step / 2.0),
                ty = num(H + 14.0),
                l = esc(&p.label)
            );
        }
    }
    type Value = fn(&TrendPoint) -> Option<f64>;
    let lines: [(&str, &str, Value); 3] = [
        ("Availability", "#1f77b4", |p| p.availability),
        ("Performance", "#2ca02c", |p| p.performance),
        ("Quality", "#9467bd", |p| p.quality),
    ];
    for (li, (name, colour, value)) in lines.iter().enumerate() {
        let pts: Vec<String> = points
            .iter()
            .enumerate()
            .filter_map(|(i, p)| value(p).map(|v| format!("{},{}", num(LEFT + (i as f64 + 0.5) * step), num(y(v)))))
            .collect();
        if pts.len() > 1 {
            let _ = write!(
                svg,
                r#"<polyline class="line-{cls}" fill="none" stroke="{colour}" stroke-width="2" points="{p}"/>"#,
                cls = name.to_lowercase(),
                p = pts.join(" ")
            );
        }
        for (i, p) in points.iter().enumerate() {
            if let Some(v) = value(p) {
                let _ = write!(
                    svg,
                    r#"<circle cx="{x}" cy="{y}" r="3" fill="{colour}"><title>{t}</title></circle>"#,
                    x = num(LEFT + (i as f64 + 0.5) * step),
                    y = num(y(v)),
                    t = esc(&format!("{}: {name} {}", p.title, pct(Some(v))))
                );
            }
        }
        let lx = LEFT + li as f64 * 130.0;
        let _ = write!(
            svg,
            r#"<rect x="{lx}" y="{ly}" width="12" height="12" fill="{colour}"/><text x="{tx}" y="{ty}">{name}</text>"#,
            ly = num(H + 30.0),
            tx = num(lx + 16.0),
            ty = num(H + 40.0)
        );
    }
    let lx = LEFT + 3.0 * 130.0;
    let _ = write!(
        svg,
        r##"<rect x="{lx}" y="{ly}" width="12" height="12" fill="#ad1920" fill-opacity="0.35"/><text x="{tx}" y="{ty}">OEE</text></svg>"##,
        ly = num(H + 30.0),
        tx = num(lx + 16.0),
        ty = num(H + 40.0)
    );
    svg
}

/// One reason of a Pareto: its name, colour, minutes and how many times it happened.
#[derive(Debug, Clone)]
pub(crate) struct Reason {
    pub name: String,
    pub colour: String,
    pub minutes: f64,
    pub count: usize,
}

/// Downtime reasons as bars of minutes, longest first (the caller's order), with the count above each bar
/// and the cumulative share as a line.
pub(crate) fn pareto(reasons: &[Reason]) -> String {
    const H: f64 = 260.0;
    let max = reasons.iter().map(|r| r.minutes).fold(0.0_f64, f64::max).max(1.0);
    let total: f64 = reasons.iter().map(|r| r.minutes).sum::<f64>().max(f64::MIN_POSITIVE);
    let step = PLOT_W / reasons.len().max(1) as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg class="chart pareto-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" role="img" aria-label="Downtime by reason" font-size="11" font-family="sans-serif"><rect x="{LEFT}" y="0" width="{PLOT_W}" height="{H}" fill="#f4f4f4"/><text x="{tx}" y="12" text-anchor="end">{m} min</text><text x="{tx}" y="{H}" text-anchor="end">0</text>"##,
        w = num(LEFT + PLOT_W + 50.0),
        h = num(H + 40.0),
        tx = num(LEFT - 6.0),
        m = num(max)
    );
    let mut cumulative = 0.0;
    let mut line = Vec::new();
    for (i, r) in reasons.iter().enumerate() {
        cumulative += r.minutes;
        let x0 = LEFT + i as f64 * step;
        let bar_h = r.minutes / max * (H - 20.0);
        let share = cumulative / total;
        let _ = write!(
            svg,
            r#"<rect class="reason" x="{x}" y="{y}" width="{w}" height="{h}" fill="{c}"><title>{t}</title></rect><text x="{cx}" y="{ty}" text-anchor="middle">{n}×</text><text x="{cx}" y="{ly}" text-anchor="middle">{l}</text>"#,
            x = num(x0 + step * 0.1),
            y = num(H - bar_h),
            w = num(step * 0.8),
            h = num(bar_h),
            c = r.colour,
            t = esc(&format!(
                "{}: {} min in {} {}, {:.0}% of the downtime so far",
                r.name,
                num(r.minutes),
                r.count,
                if r.count == 1 { "stop" } else { "stops" },
                share * 100.0
            )),
            cx = num(x0 + step / 2.0),
            ty = num(H - bar_h - 4.0),
            n = r.count,
            ly = num(H + 14.0),
            l = esc(&r.name)
        );
        line.push(format!("{},{}", num(x0 + step / 2.0), num(H - share * (H - 20.0))));
    }
    if !line.is_empty() {
        let _ = write!(
            svg,
            r##"<polyline class="cumulative" fill="none" stroke="#333333" stroke-width="1.5" points="{}"/><text x="{x}" y="12">100%</text>"##,
            line.join(" "),
            x = num(LEFT + PLOT_W + 4.0)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One step of a waterfall: a total drawn from zero (planned time, fully productive time) or a loss
/// hanging from the level the steps before it left.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub name: String,
    pub hours: f64,
    pub total: bool,
}

/// The six big losses as a waterfall from planned time down to fully productive time, in hours.
pub(crate) fn waterfall(steps: &[Step]) -> String {
    const H: f64 = 260.0;
    let max = steps.iter().filter(|s| s.total).map(|s| s.hours).fold(0.0_f64, f64::max).max(1e-9);
    let scale = |h: f64| h / max * (H - 20.0);
    let step = PLOT_W / steps.len().max(1) as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg class="chart waterfall-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" role="img" aria-label="Six big losses" font-size="11" font-family="sans-serif"><rect x="{LEFT}" y="0" width="{PLOT_W}" height="{H}" fill="#f4f4f4"/>"##,
        w = num(LEFT + PLOT_W + 10.0),
        h = num(H + 40.0)
    );
    let mut level = 0.0;
    for (i, s) in steps.iter().enumerate() {
        let (top, bottom, colour) = if s.total {
            level = s.hours;
            (s.hours, 0.0, "#1f77b4")
        } else {
            let from = level;
            level -= s.hours;
            (from.max(level), from.min(level), "#ad1920")
        };
        let x0 = LEFT + i as f64 * step;
        let _ = write!(
            svg,
            r#"<rect class="{cls}" x="{x}" y="{y}" width="{w}" height="{h}" fill="{colour}"><title>{t}</title></rect><text x="{cx}" y="{vy}" text-anchor="middle">{v} h</text><text x="{cx}" y="{ly}" text-anchor="middle">{l}</text>"#,
            cls = if s.total { "total" } else { "loss" },
            x = num(x0 + step * 0.1),
            y = num(H - scale(top)),
            w = num(step * 0.8),
            h = num(scale(top - bottom)),
            t = esc(&format!("{}: {} h", s.name, num2(s.hours))),
            cx = num(x0 + step / 2.0),
            vy = num(H - scale(top) - 4.0),
            v = num2(s.hours),
            ly = num(H + 14.0),
            l = esc(&s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Hours with two decimals (the waterfall's labels and titles).
pub(crate) fn num2(x: f64) -> String {
    format!("{x:.2}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stretch(from: f64, to: f64, key: i32) -> Stretch {
        Stretch { from, to, key, colour: "#00ff00".into(), name: format!("c{key}"), title: format!("t{key}") }
    }

    #[test]
    fn short_stretches_fold_into_the_column_they_mostly_fill() {
        // Ten columns: 0–0.3 code 1, then a sliver of code 2 inside code 1's column, then code 3.
        let s = [stretch(0.0, 0.32, 1), stretch(0.32, 0.33, 2), stretch(0.33, 0.6, 3)];
        assert_eq!(
            runs(&s, 10),
            vec![Run { c0: 0, c1: 3, key: 1 }, Run { c0: 3, c1: 6, key: 3 }],
            "the sliver is no shape of its own"
        );
        // A column less than half covered is left empty.
        assert_eq!(runs(&[stretch(0.0, 0.04, 1)], 10), vec![]);
    }

    #[test]
    fn text_is_escaped_and_numbers_are_short() {
        assert_eq!(esc(r#"<a & "b">"#), "&lt;a &amp; &quot;b&quot;&gt;");
        assert_eq!(num(12.04), "12");
        assert_eq!(num(12.25), "12.3");
        assert_eq!(fill("nonsense\"/>"), "#999999");
    }

    #[test]
    fn many_stretches_become_a_path_per_row_and_code_in_bounded_markup() {
        // Forty rows of ten thousand stretches each, the code changing every seven (0.7 of a column at the
        // finest): far too many runs for titles, drawn as paths in fewer columns.
        let rows: Vec<Row> = (0..40)
            .map(|r| Row {
                label: format!("M{r}"),
                stretches: (0..10_000).map(|i| stretch(i as f64 / 1e4, (i + 1) as f64 / 1e4, (i / 7) % 2)).collect(),
            })
            .collect();
        assert!(runs(&rows[0].stretches, 1000).len() > DETAIL_SHAPES / 40, "the code changes often");
        let svg = timeline(&rows, &[], |_| String::new());
        assert!(svg.contains("<title>M0 · c1: ") && svg.contains("stretches (zoom in"), "a path's title sums it up");
        assert!(!svg.contains("<rect x=\"170\" y=\"0\" width=\"0.7\""), "no shape per activity");
        assert!(svg.matches("<path").count() <= 80, "one path per row and code");
        assert!(svg.len() < 150_000, "{} bytes", svg.len());
    }

    #[test]
    fn a_single_activity_keeps_its_own_title() {
        let rows = [Row { label: "Press".into(), stretches: vec![stretch(0.1, 0.5, 1)] }];
        let svg = timeline(&rows, &[(0.0, "00:00".into())], |_| String::new());
        assert!(svg.contains("<title>Press · t1</title>"), "{svg}");
        assert!(svg.contains(r#"x="270" y="0" width="400""#), "{svg}");
    }
}
