//! The status page (`/`): plain server-rendered HTML with inline SVG charts, no script and
//! no external asset, so it reads the same with JavaScript off, on a phone and on paper.
//! It refreshes itself with a `<meta>` refresh.
//!
//! Each planned indicator is one table row carrying its numbers both as text and as `data-`
//! attributes (exact, for scripts and tests), a status badge whose label carries the
//! meaning without colour, and a chart of the value against the plan's pace line from the
//! plan's start to its deadline.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use paceline_model::catalogue::TagKind;
use paceline_model::config::PlanKind;
use paceline_model::point::{Fields, Point, Status};
use paceline_model::{Indicator, Nanos, Stream};

use crate::board::{Freshness, PlannedView, Snapshot};
use crate::present::{compact, day, number, status_label, tick};

/// What the page says about the process itself.
#[derive(Debug, Clone)]
pub struct Health {
    /// Ready to serve (sources assigned, sink accepting).
    pub ready: bool,
    /// A short sentence: "ready", or the reason it is not.
    pub detail: String,
}

/// Everything the page shows.
#[derive(Debug, Clone)]
pub struct PageInput<'a> {
    /// `serve` or `demo`.
    pub mode: &'a str,
    /// What the run has written so far.
    pub snapshot: &'a Snapshot,
    /// Readiness, shown at the top.
    pub health: Health,
    /// Wall-clock time of rendering, shown so a stale printout is recognised.
    pub now: Nanos,
    /// Seconds between refreshes.
    pub refresh_s: u32,
    /// This process's place in a cluster: its page shows the series it writes and names
    /// the process of each other one.
    pub cluster: Option<&'a crate::serve::http::ClusterView>,
}

const STYLE: &str = r#"
:root { --met:#1a7f37; --on_track:#0b5cad; --at_risk:#8a5a00; --behind:#b42318; --ink:#1f2328; --muted:#59636e; --line:#d0d7de; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); margin: 0 auto; max-width: 1180px; padding: 12px 16px 32px; }
h1 { font-size: 1.5rem; margin: .2rem 0; } h2 { font-size: 1.15rem; margin: 1.6rem 0 .4rem; }
p.meta, p.health { margin: .2rem 0; color: var(--muted); }
p.health.ok::before { content: "● "; color: var(--met); } p.health.bad::before { content: "✕ "; color: var(--behind); }
p.health.bad { color: var(--behind); font-weight: 600; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: middle; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
thead th { font-size: .8rem; text-transform: uppercase; letter-spacing: .03em; color: var(--muted); }
th small { display: block; font-weight: normal; color: var(--muted); }
th small span { white-space: nowrap; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-weight: 600; font-size: .85rem; border: 1.5px solid currentColor; white-space: nowrap; }
.st-met { color: var(--met); } .st-on_track { color: var(--on_track); } .st-at_risk { color: var(--at_risk); } .st-behind { color: var(--behind); } .st-none { color: var(--muted); }
svg.chart { width: 100%; max-width: 300px; height: auto; display: block; }
td.trend { min-width: 150px; width: 24%; }
.scroll { overflow-x: auto; }
svg .value { fill: none; stroke: var(--ink); stroke-width: 2; }
svg .pace { fill: none; stroke: #8c959f; stroke-width: 1.5; stroke-dasharray: 5 3; }
svg .target { stroke: #8c959f; stroke-width: 1; stroke-dasharray: 1 3; }
svg .projection { fill: none; stroke: var(--muted); stroke-width: 1.5; stroke-dasharray: 2 2; }
svg .axis { fill: var(--muted); font-size: 10px; }
.legend { font-size: .8rem; color: var(--muted); }
.legend span { margin-right: 1rem; white-space: nowrap; }
h3 { font-size: 1rem; margin: 1rem 0 .2rem; }
ul.streams { padding-left: 1.2rem; margin: .3rem 0; }
@media (max-width: 760px) {
  table.plan thead { display: none; }
  table.plan tr { display: block; border-bottom: 2px solid var(--line); padding: 6px 0; }
  table.plan th, table.plan td { display: block; border: 0; padding: 2px 4px; text-align: left; }
  table.plan td.trend { width: auto; }
  table.plan td.num::before, table.plan td.status::before { content: attr(data-label) ": "; color: var(--muted); }
}
@media print {
  body { max-width: none; font-size: 11px; } a { color: inherit; }
  table.plan tr { break-inside: avoid; }
  .badge { border-width: 1px; }
}
"#;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn status_class(s: Option<Status>) -> &'static str {
    s.map_or("none", Status::as_str)
}

/// The badge's mark repeats the status in shape, for readers who cannot tell the colours.
fn status_mark(s: Option<Status>) -> &'static str {
    match s {
        Some(Status::Met) => "✓",
        Some(Status::OnTrack) => "↗",
        Some(Status::AtRisk) => "▲",
        Some(Status::Behind) => "✕",
        None => "·",
    }
}

fn badge(s: Option<Status>) -> String {
    format!(
        r#"<span class="badge st-{}">{} {}</span>"#,
        status_class(s),
        status_mark(s),
        status_label(s)
    )
}

/// Exact numbers for `data-` attributes: Rust's shortest round-trip spelling.
fn exact(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

/// Maps time and value to the chart's box.
struct Scale {
    t0: f64,
    t1: f64,
    v0: f64,
    v1: f64,
}

const CHART_W: f64 = 300.0;
const CHART_H: f64 = 96.0;
const PAD_TOP: f64 = 6.0;
const PAD_BOTTOM: f64 = 16.0;

impl Scale {
    fn x(&self, t: Nanos) -> f64 {
        (t as f64 - self.t0) / (self.t1 - self.t0) * CHART_W
    }
    fn y(&self, v: f64) -> f64 {
        let h = CHART_H - PAD_TOP - PAD_BOTTOM;
        PAD_TOP + h - (v - self.v0) / (self.v1 - self.v0) * h
    }
    fn xy(&self, t: Nanos, v: f64) -> String {
        format!("{:.1},{:.1}", self.x(t), self.y(v))
    }
}

/// The pace line: the pipeline's own `expected` values, continued to the deadline at the
/// target (the line reaches the target there by definition).
fn pace_line(view: &PlannedView) -> Vec<(Nanos, f64)> {
    let plan = &view.plan;
    match plan.kind {
        PlanKind::Threshold => vec![(plan.start, plan.target), (plan.deadline, plan.target)],
        PlanKind::Cumulative => {
            let mut line: Vec<(Nanos, f64)> = view
                .chart
                .iter()
                .filter_map(|(t, f)| f.expected.map(|e| (*t, e)))
                .collect();
            if line.last().is_some_and(|(t, _)| *t < plan.deadline) {
                line.push((plan.deadline, plan.target));
            }
            line
        }
    }
}

fn chart(view: &PlannedView) -> String {
    let plan = &view.plan;
    let values: Vec<(Nanos, f64)> = view.chart.iter().map(|(t, f)| (*t, f.value)).collect();
    let pace = pace_line(view);
    let last: Option<(Nanos, Fields)> = view.chart.last().copied();
    let projection = match (plan.kind, last) {
        (PlanKind::Cumulative, Some((t, f))) if t < plan.deadline => {
            f.projected.map(|p| [(t, f.value), (plan.deadline, p)])
        }
        _ => None,
    };
    let end = last.map_or(plan.deadline, |(t, _)| t.max(plan.deadline));
    let all = values
        .iter()
        .chain(&pace)
        .chain(projection.iter().flatten())
        .map(|(_, v)| *v)
        .chain([0.0, plan.target]);
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let s = Scale {
        t0: plan.start as f64,
        t1: (end.max(plan.start + 1)) as f64,
        v0: lo,
        v1: lo + span * 1.08,
    };
    let poly = |pts: &[(Nanos, f64)]| -> String {
        pts.iter()
            .map(|(t, v)| s.xy(*t, *v))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let name = plan.series.display();
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {CHART_W} {CHART_H}" role="img" aria-label="{} against the plan's pace, {} to {}"><title>{} against the plan's pace line</title>"#,
        escape(&name),
        day(plan.start),
        day(plan.deadline),
        escape(&name)
    );
    let ty = s.y(plan.target);
    let _ = write!(
        svg,
        r#"<line class="target" x1="0" y1="{ty:.1}" x2="{CHART_W}" y2="{ty:.1}"/>"#
    );
    if pace.len() >= 2 {
        let _ = write!(svg, r#"<polyline class="pace" points="{}"/>"#, poly(&pace));
    }
    if let Some(p) = projection {
        let _ = write!(
            svg,
            r#"<polyline class="projection" points="{}"/>"#,
            poly(&p)
        );
    }
    if values.len() >= 2 {
        let _ = write!(
            svg,
            r#"<polyline class="value" points="{}"/>"#,
            poly(&values)
        );
    } else if let Some((t, v)) = values.first() {
        let _ = write!(
            svg,
            r#"<circle class="value" cx="{:.1}" cy="{:.1}" r="2"/>"#,
            s.x(*t),
            s.y(*v)
        );
    }
    let base = CHART_H - 3.0;
    let _ = write!(
        svg,
        r#"<text class="axis" x="0" y="{base}">{}</text><text class="axis" x="{CHART_W}" y="{base}" text-anchor="end">{}</text></svg>"#,
        day(plan.start),
        day(end)
    );
    svg
}

fn planned_row(out: &mut String, view: &PlannedView, elsewhere: Option<&str>) {
    let plan = &view.plan;
    let name = plan.series.display();
    let f = view.latest.as_ref().map(|p| p.fields);
    let get = |pick: fn(&Fields) -> Option<f64>| f.as_ref().and_then(pick);
    let status = f.and_then(|f| f.status);
    let _ = write!(
        out,
        r#"<tr class="indicator" data-series="{}" data-tick="{}" data-value="{}" data-expected="{}" data-target="{}" data-pace-ratio="{}" data-projected="{}" data-status="{}">"#,
        escape(&name),
        view.latest
            .as_ref()
            .map_or(String::new(), |p| p.tick.to_string()),
        exact(get(|f| Some(f.value))),
        exact(get(|f| f.expected)),
        exact(get(|f| f.target)),
        exact(get(|f| f.pace_ratio)),
        exact(get(|f| f.projected)),
        status.map_or("", Status::as_str),
    );
    let kind = match plan.kind {
        PlanKind::Cumulative => "cumulative",
        PlanKind::Threshold => "threshold",
    };
    let as_of = match (&view.latest, elsewhere) {
        (Some(p), _) => format!("as of {}", tick(p.tick)),
        (None, Some(other)) => format!("written by {}", escape(other)),
        (None, None) => "no data yet".to_string(),
    };
    let _ = write!(
        out,
        r#"<th scope="row">{}<small>{kind}, target by <span>{}</span> · <span>{as_of}</span></small></th>"#,
        // A tagged name may wrap before its tag.
        escape(&name).replace('{', "<wbr>{"),
        day(plan.deadline)
    );
    let cells = [
        ("Value", f.map(|f| f.value)),
        ("Expected", get(|f| f.expected)),
        ("Target", Some(get(|f| f.target).unwrap_or(plan.target))),
        ("Pace ratio", get(|f| f.pace_ratio)),
        ("Projected", get(|f| f.projected)),
    ];
    for (label, v) in cells {
        let _ = write!(
            out,
            r#"<td class="num" data-label="{label}">{}</td>"#,
            v.map_or_else(|| "–".to_string(), compact)
        );
    }
    let _ = write!(
        out,
        r#"<td class="status" data-label="Status">{}</td><td class="trend">{}</td></tr>"#,
        badge(status),
        chart(view)
    );
}

/// Latest values of the tagged series, as one table per tag kind: rows are tag values,
/// columns the indicators carrying that tag.
fn breakdowns(out: &mut String, latest: &[Point]) {
    let kinds = [
        (TagKind::Cluster, "Clusters"),
        (TagKind::Field, "Scenario fields"),
        (TagKind::Region, "Regions"),
        (TagKind::PlatformKind, "Platforms"),
    ];
    out.push_str(r#"<h2 id="breakdowns">Breakdowns</h2><p class="meta">Every tagged series at its newest tick.</p>"#);
    for (kind, title) in kinds {
        let mut columns: Vec<Indicator> = Vec::new();
        let mut rows: BTreeMap<u8, BTreeMap<Indicator, f64>> = BTreeMap::new();
        for p in latest
            .iter()
            .filter(|p| p.series.indicator.tag_kind() == kind)
        {
            let ind = p.series.indicator;
            if !columns.contains(&ind) {
                columns.push(ind);
            }
            rows.entry(p.series.tag)
                .or_default()
                .insert(ind, p.fields.value);
        }
        columns.sort_by_key(|i| i.index());
        let key = kind.key().unwrap_or_default();
        let _ = write!(
            out,
            r#"<section class="breakdown" data-tag="{key}"><h3>{title}</h3>"#
        );
        if rows.is_empty() {
            out.push_str("<p class=\"meta\">No data yet.</p></section>");
            continue;
        }
        let _ = write!(
            out,
            r#"<div class="scroll"><table><thead><tr><th>{key}</th>"#
        );
        for c in &columns {
            // Long names wrap at their underscores, not mid-word.
            let _ = write!(
                out,
                r#"<th class="num">{}</th>"#,
                c.name().replace('_', "_<wbr>")
            );
        }
        out.push_str("</tr></thead><tbody>");
        for (tag, values) in &rows {
            let _ = write!(
                out,
                r#"<tr><th scope="row">{}</th>"#,
                escape(kind.value(*tag).unwrap_or("?"))
            );
            for c in &columns {
                let _ = write!(
                    out,
                    r#"<td class="num">{}</td>"#,
                    values
                        .get(c)
                        .map_or_else(|| "–".to_string(), |v| compact(*v))
                );
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table></div></section>");
    }
}

fn freshness(out: &mut String, streams: &[Freshness; 3]) {
    out.push_str(r#"<h2 id="freshness">Freshness</h2><ul class="streams">"#);
    for s in Stream::ALL {
        let f = streams[s.index()];
        let mark = f.watermark.map_or_else(
            || "no watermark yet".to_string(),
            |w| format!("watermark {}", tick(w)),
        );
        let lag = f.lag.map_or_else(String::new, |l| {
            format!(", {} messages unread", number(l as f64))
        });
        let _ = write!(
            out,
            r#"<li data-stream="{}"><strong>{}</strong>: {mark}{lag}</li>"#,
            s.as_str(),
            s.as_str()
        );
    }
    out.push_str("</ul>");
}

/// Renders the whole page.
pub fn render(input: &PageInput<'_>) -> String {
    let snap = input.snapshot;
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta http-equiv="refresh" content="{}"><title>paceline · plan pace</title><style>{STYLE}</style></head><body>"#,
        input.refresh_s
    );
    let (class, label) = if input.health.ready {
        ("ok", "Service ready")
    } else {
        ("bad", "Service not ready")
    };
    let _ = write!(
        out,
        r#"<header><h1>Plan pace</h1><p class="health {class}" id="health">{label}: {}</p><p class="meta">paceline {} ({}) · page rendered {} (+08:00), refreshes every {} s · times are ticks in UTC+08:00</p></header>"#,
        escape(&input.health.detail),
        env!("CARGO_PKG_VERSION"),
        escape(input.mode),
        tick(input.now),
        input.refresh_s
    );
    if let Some(c) = input.cluster {
        let _ = write!(
            out,
            r#"<p class="meta" id="cluster">Process {} of a cluster of {}: this page shows the series this process writes; each other planned row names the process that writes it (every process has this page).</p>"#,
            c.placement.process, c.placement.processes
        );
    }
    out.push_str(r#"<main><h2 id="planned">Planned indicators</h2>"#);
    out.push_str(r#"<p class="legend"><span>━ value</span> <span>╌ plan pace (expected)</span> <span>┈ target</span> <span>⋯ projection to the deadline</span></p>"#);
    out.push_str(r#"<div class="scroll"><table class="plan"><thead><tr><th>Indicator</th><th class="num">Value</th><th class="num">Expected</th><th class="num">Target</th><th class="num">Pace ratio</th><th class="num">Projected</th><th>Status</th><th>Value against pace</th></tr></thead><tbody>"#);
    for view in &snap.planned {
        let elsewhere = input
            .cluster
            .and_then(|c| c.elsewhere(view.plan.series))
            .map(|(_, name)| name);
        planned_row(&mut out, view, elsewhere.as_deref());
    }
    out.push_str("</tbody></table></div>");
    breakdowns(&mut out, &snap.latest);
    freshness(&mut out, &snap.streams);
    out.push_str(r#"</main><footer><p class="meta">Machine-readable: <a href="/api/v1/indicators">/api/v1/indicators</a> · <a href="/metrics">/metrics</a> · <a href="/readyz">/readyz</a></p></footer></body></html>"#);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::Board;
    use paceline_model::config::PlanSpec;
    use paceline_model::time::DAY;
    use paceline_model::SeriesKey;

    fn snapshot() -> Snapshot {
        let plan = PlanSpec {
            series: SeriesKey::plain(Indicator::QuasiUnicorns),
            kind: PlanKind::Cumulative,
            target: 10.0,
            start: 0,
            deadline: 100 * DAY,
            tolerance: 0.9,
            verdict_tick: i64::MAX,
        };
        let board = Board::new(vec![plan]);
        let pts: Vec<Point> = (1..=50)
            .map(|d| Point {
                series: SeriesKey::plain(Indicator::QuasiUnicorns),
                tick: d * DAY,
                fields: Fields {
                    value: (d / 10) as f64,
                    target: Some(10.0),
                    expected: Some(d as f64 / 10.0),
                    pace_ratio: Some(0.5),
                    projected: Some(7.5),
                    status: Some(Status::Behind),
                },
                correction: false,
                verdict: None,
            })
            .chain([Point {
                series: SeriesKey::tagged(Indicator::ClusterEnterprises, 0),
                tick: 50 * DAY,
                fields: Fields::value(42.0),
                correction: false,
                verdict: None,
            }])
            .collect();
        board.record(&pts);
        board.snapshot()
    }

    #[test]
    fn page_has_a_row_a_badge_and_a_chart_per_planned_series() {
        let snap = snapshot();
        let html = render(&PageInput {
            mode: "demo",
            snapshot: &snap,
            health: Health {
                ready: false,
                detail: "sink <down>".into(),
            },
            now: 0,
            refresh_s: 15,
            cluster: None,
        });
        assert_eq!(html.matches(r#"<tr class="indicator""#).count(), 1);
        assert!(html.contains(r#"data-series="quasi_unicorns""#));
        assert!(html.contains(r#"data-value="5""#));
        assert!(html.contains(r#"data-status="behind""#));
        assert!(html.contains("✕ behind"));
        assert_eq!(html.matches("<svg").count(), 1);
        assert!(html.contains(r#"class="value""#) && html.contains(r#"class="pace""#));
        // The pace line is continued to the deadline at the target: x = 300 at y(10).
        assert!(html.contains("300.0,"));
        assert!(html.contains("Service not ready: sink &lt;down&gt;"));
        assert!(html.contains(r#"data-tag="cluster""#) && html.contains("cybersecurity"));
        assert!(!html.contains("<script"));
        assert!(html.contains(r#"http-equiv="refresh" content="15""#));
    }
}
