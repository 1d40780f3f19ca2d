//! The status page (`/`): plain server-rendered HTML with inline SVG charts, no script and
//! no external asset, so it reads the same with JavaScript off, on a phone and on paper.
//! It refreshes itself with a `<meta>` refresh.
//!
//! It speaks English or Chinese (docs/outputs.md, "HTTP"): every name comes from the
//! model's catalogue, every number is written in its indicator's unit. Each planned
//! indicator is one table row carrying its numbers both as text and as `data-` attributes
//! (exact, for scripts and tests), a status badge and a verdict badge whose labels carry
//! the meaning without colour, and a chart of the value against the plan's pace line from
//! the plan's start to its deadline.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use paceline_model::catalogue::TagKind;
use paceline_model::config::PlanKind;
use paceline_model::names::Lang;
use paceline_model::point::{Fields, Point, Status, Verdict};
use paceline_model::{Indicator, Nanos, Stream};

use crate::board::{Freshness, PlannedView, Snapshot};
use crate::present::{
    day, has_verdict_date, kind_title, number, shown, shown_pace, status_title, tick,
    verdict_basis, verdict_title,
};

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
    /// This process's place in a cluster (the snapshot holds every process's share that
    /// answered).
    pub cluster: Option<&'a crate::serve::http::ClusterView>,
    /// The processes whose share is missing, and why.
    pub unanswered: &'a [crate::serve::peers::Unanswered],
    /// The language of the page.
    pub lang: Lang,
}

/// Which process of how many made the page, a link to every process's own page, and each
/// process that did not answer (its series are missing).
fn cluster_note(
    out: &mut String,
    c: &crate::serve::http::ClusterView,
    unanswered: &[crate::serve::peers::Unanswered],
    lang: Lang,
) {
    let links: Vec<String> = c
        .http
        .iter()
        .enumerate()
        .map(|(i, a)| format!(r#"<a href="http://{0}/">{i}</a>"#, escape(a)))
        .collect();
    let links = links.join(" · ");
    let (me, all) = (c.placement.process, c.placement.processes);
    let _ = match lang {
        Lang::En => write!(
            out,
            r#"<p class="meta" id="cluster">Process {me} of a cluster of {all}: every process's series, gathered for this page. Each process's own page: {links}</p>"#
        ),
        Lang::Zh => write!(
            out,
            r#"<p class="meta" id="cluster">集群共 {all} 个进程，本页由进程 {me} 生成，汇集了所有进程的数据。各进程的页面：{links}</p>"#
        ),
    };
    for u in unanswered {
        let (p, a, why) = (u.process, escape(&u.address), escape(&u.reason));
        let _ = match lang {
            Lang::En => write!(
                out,
                r#"<p class="health bad unanswered" data-process="{p}">Process {p} ({a}) did not answer ({why}): the series it writes are not shown.</p>"#
            ),
            Lang::Zh => write!(
                out,
                r#"<p class="health bad unanswered" data-process="{p}">进程 {p}（{a}）未应答（{why}）：它写入的指标未显示。</p>"#
            ),
        };
    }
}

/// The page's language: `?lang=` first, then the configured default
/// (`service.language`), then the browser's `Accept-Language`, else English.
pub fn choose_language(
    query: Option<&str>,
    configured: Option<Lang>,
    accept: Option<&str>,
) -> Lang {
    query
        .and_then(Lang::parse)
        .or(configured)
        .or_else(|| accept.and_then(Lang::from_accept_language))
        .unwrap_or(Lang::En)
}

/// The page's own words, in one language.
struct Words {
    html_lang: &'static str,
    title: &'static str,
    ready: &'static str,
    not_ready: &'static str,
    rendered: &'static str,
    planned: &'static str,
    legend: [&'static str; 4],
    /// Column headers: indicator, value, expected, target, pace, projected, status,
    /// verdict, chart.
    columns: [&'static str; 9],
    target_by: &'static str,
    as_of: &'static str,
    written_by: &'static str,
    no_data: &'static str,
    judged_on: &'static str,
    against_pace: &'static str,
    breakdowns: &'static str,
    breakdowns_meta: &'static str,
    tag_kinds: [&'static str; 4],
    data_as_of: &'static str,
    data_as_of_meta: &'static str,
    no_watermark: &'static str,
    unread: &'static str,
    machine: &'static str,
}

const EN: Words = Words {
    html_lang: "en",
    title: "Plan pace",
    ready: "Service ready",
    not_ready: "Service not ready",
    rendered: "page rendered",
    planned: "Planned indicators",
    legend: [
        "━ value",
        "╌ plan pace (expected)",
        "┈ target",
        "⋯ projection to the deadline",
    ],
    columns: [
        "Indicator",
        "Value",
        "Expected",
        "Target",
        "Pace",
        "Projected",
        "Status",
        "Verdict",
        "Value against pace",
    ],
    target_by: "target by",
    as_of: "as of",
    written_by: "not shown: written by process",
    no_data: "no data yet",
    judged_on: "judged on",
    against_pace: "against the plan's pace",
    breakdowns: "Breakdowns",
    breakdowns_meta: "Every tagged series at its newest tick.",
    tag_kinds: ["Industry clusters", "Application-scenario fields", "Regions", "Platforms"],
    data_as_of: "Data as of",
    data_as_of_meta: "How far each input stream has been read, in event time (the watermark): numbers above include the data up to it.",
    no_watermark: "no data yet",
    unread: "messages not yet read",
    machine: "Machine-readable",
};

const ZH: Words = Words {
    html_lang: "zh-CN",
    title: "规划进度",
    ready: "服务正常",
    not_ready: "服务未就绪",
    rendered: "页面生成于",
    planned: "规划指标",
    legend: [
        "━ 当前值",
        "╌ 计划进度（应达值）",
        "┈ 目标值",
        "⋯ 截止日预测",
    ],
    columns: [
        "指标",
        "当前值",
        "应达值",
        "目标值",
        "进度",
        "预计到期值",
        "状态",
        "评定",
        "走势",
    ],
    target_by: "目标截止",
    as_of: "数据截至",
    written_by: "未显示：写入它的进程",
    no_data: "暂无数据",
    judged_on: "评定日",
    against_pace: "与计划进度对比",
    breakdowns: "分项",
    breakdowns_meta: "各分项指标的最新数值。",
    tag_kinds: ["产业集群", "应用场景领域", "区域", "平台"],
    data_as_of: "数据时效",
    data_as_of_meta: "各数据流已读取到的事件时间（水位线）：上方数字包含截至该时间的数据。",
    no_watermark: "暂无数据",
    unread: "条消息待读取",
    machine: "机器可读接口",
};

fn words(lang: Lang) -> &'static Words {
    match lang {
        Lang::En => &EN,
        Lang::Zh => &ZH,
    }
}

/// One line on what "expected", "pace" and the statuses mean, with the tolerance the
/// planned rows use (each row names its own when it differs).
fn explanation(lang: Lang, tolerance: Option<f64>) -> String {
    let tol = tolerance.map_or_else(
        || match lang {
            Lang::En => "its tolerance".to_string(),
            Lang::Zh => "其容差".to_string(),
        },
        |t| shown_pace(Some(t), lang),
    );
    match lang {
        Lang::En => format!(
            "<strong>Expected</strong> is where the plan's straight line stands today, from the value at the plan's start to the target at the deadline; <strong>pace</strong> is the progress made as a share of the progress expected. A goal is <em>on track</em> at a pace of 100 % or more, <em>at risk</em> from {tol}, <em>behind</em> below {tol}, and <em>met</em> once its value reaches the target. Once the data for the deadline is complete, the goal is judged <em>met</em> or <em>missed</em>."
        ),
        Lang::Zh => format!(
            "<strong>应达值</strong>：从计划起始时的数值到截止日目标值的直线在今天的位置；<strong>进度</strong>：实际增长占应达增长的比例。进度达到 100% 为<em>按进度推进</em>，不低于 {tol} 为<em>存在风险</em>，低于 {tol} 为<em>进度滞后</em>，数值达到目标即为<em>已完成</em>。截止日的数据齐全后，评定目标<em>已完成</em>或<em>未完成</em>。"
        ),
    }
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
.vd-met { color: var(--met); } .vd-missed { color: var(--behind); }
td.verdict { min-width: 10rem; }
td.verdict small, th small code { display: block; font-weight: normal; color: var(--muted); font-size: .8rem; }
code.id { font-size: .75rem; color: var(--muted); }
nav.lang { float: right; font-size: .9rem; } nav.lang a { margin-left: .6rem; }
p.explain { font-size: .9rem; color: var(--muted); max-width: 60rem; }
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

/// Text made safe inside HTML elements and attribute values.
pub(crate) fn escape(s: &str) -> String {
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

fn badge(s: Option<Status>, lang: Lang) -> String {
    format!(
        r#"<span class="badge st-{}">{} {}</span>"#,
        status_class(s),
        status_mark(s),
        status_title(s, lang)
    )
}

/// The verdict's badge and what it judged ("2024 revenue, complete 2025-02-15"); before
/// the verdict tick, the date it will be judged on.
fn verdict_cell(view: &PlannedView, lang: Lang) -> String {
    let basis = if has_verdict_date(&view.plan) {
        escape(&verdict_basis(&view.plan, lang))
    } else {
        String::new()
    };
    match view.verdict {
        Some((_, f)) => {
            let mark = match f.verdict {
                Verdict::Met => "✓",
                Verdict::Missed => "✕",
            };
            format!(
                r#"<span class="badge vd-{}">{mark} {}</span><small>{basis}</small>"#,
                f.verdict.as_str(),
                verdict_title(f.verdict, lang)
            )
        }
        None if has_verdict_date(&view.plan) => format!(
            r#"–<small>{} {}</small>"#,
            words(lang).judged_on,
            day(view.plan.verdict_tick)
        ),
        None => "–".into(),
    }
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

/// A planned series' chart: its value against the plan's pace line (the briefing draws it
/// too).
pub(crate) fn chart(view: &PlannedView, lang: Lang) -> String {
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
    let name = escape(&plan.series.title(lang));
    let against = words(lang).against_pace;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {CHART_W} {CHART_H}" role="img" aria-label="{name} {against}, {} – {}"><title>{name} {against}</title>"#,
        day(plan.start),
        day(plan.deadline),
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

fn planned_row(out: &mut String, view: &PlannedView, elsewhere: Option<&str>, lang: Lang) {
    let w = words(lang);
    let plan = &view.plan;
    let ind = plan.series.indicator;
    let f = view.latest.as_ref().map(|p| p.fields);
    let get = |pick: fn(&Fields) -> Option<f64>| f.as_ref().and_then(pick);
    let status = f.and_then(|f| f.status);
    let (verdict, verdict_tick) = view
        .verdict
        .map_or((String::new(), String::new()), |(t, v)| {
            (v.verdict.as_str().to_string(), t.to_string())
        });
    let _ = write!(
        out,
        r#"<tr class="indicator" data-series="{}" data-unit="{}" data-tick="{}" data-value="{}" data-expected="{}" data-target="{}" data-pace-ratio="{}" data-projected="{}" data-status="{}" data-verdict="{verdict}" data-verdict-tick="{verdict_tick}">"#,
        escape(&plan.series.display()),
        ind.unit().code(),
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
    let as_of = match (&view.latest, elsewhere) {
        (Some(p), _) => format!("{} {}", w.as_of, tick(p.tick)),
        (None, Some(other)) => format!("{} {other}", w.written_by),
        (None, None) => w.no_data.to_string(),
    };
    // The identifier, small, for those who query the data; a tagged one may wrap before
    // its tag.
    let _ = write!(
        out,
        r#"<th scope="row"><span class="title">{}</span><small><code class="id">{}</code><span>{}, {} {}</span> · <span>{as_of}</span></small></th>"#,
        escape(&plan.series.title(lang)),
        escape(&plan.series.display()).replace('{', "<wbr>{"),
        kind_title(plan.kind, lang),
        w.target_by,
        day(plan.deadline),
    );
    let cells = [
        ("value", shown(ind, f.map(|f| f.value), lang)),
        ("expected", shown(ind, get(|f| f.expected), lang)),
        (
            "target",
            shown(ind, Some(get(|f| f.target).unwrap_or(plan.target)), lang),
        ),
        ("pace_ratio", shown_pace(get(|f| f.pace_ratio), lang)),
        ("projected", shown(ind, get(|f| f.projected), lang)),
    ];
    for (i, (field, text)) in cells.iter().enumerate() {
        let _ = write!(
            out,
            r#"<td class="num" data-field="{field}" data-label="{}">{}</td>"#,
            w.columns[i + 1],
            escape(text)
        );
    }
    let _ = write!(
        out,
        r#"<td class="status" data-label="{}">{}</td><td class="verdict" data-label="{}">{}</td><td class="trend">{}</td></tr>"#,
        w.columns[6],
        badge(status, lang),
        w.columns[7],
        verdict_cell(view, lang),
        chart(view, lang)
    );
}

/// Latest values of the tagged series, as one table per tag kind: rows are tag values,
/// columns the indicators carrying that tag.
fn breakdowns(out: &mut String, latest: &[Point], lang: Lang) {
    let w = words(lang);
    let kinds = [
        TagKind::Cluster,
        TagKind::Field,
        TagKind::Region,
        TagKind::PlatformKind,
    ];
    let _ = write!(
        out,
        r#"<h2 id="breakdowns">{}</h2><p class="meta">{}</p>"#,
        w.breakdowns, w.breakdowns_meta
    );
    for (kind, title) in kinds.into_iter().zip(w.tag_kinds) {
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
            let _ = write!(out, r#"<p class="meta">{}</p></section>"#, w.no_data);
            continue;
        }
        let _ = write!(
            out,
            r#"<div class="scroll"><table><thead><tr><th>{title}</th>"#
        );
        for c in &columns {
            let _ = write!(
                out,
                r#"<th class="num" data-indicator="{}">{}</th>"#,
                c.name(),
                escape(c.title().get(lang))
            );
        }
        out.push_str("</tr></thead><tbody>");
        for (tag, values) in &rows {
            let name = kind
                .title(*tag)
                .map_or_else(|| "?".to_string(), |t| t.get(lang).to_string());
            let _ = write!(
                out,
                r#"<tr data-tag-value="{}"><th scope="row">{}</th>"#,
                escape(kind.value(*tag).unwrap_or("?")),
                escape(&name)
            );
            for c in &columns {
                let _ = write!(
                    out,
                    r#"<td class="num">{}</td>"#,
                    escape(&shown(*c, values.get(c).copied(), lang))
                );
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table></div></section>");
    }
}

/// "Data as of": each stream's watermark, and in serve its unread messages.
fn freshness(out: &mut String, streams: &[Freshness; 3], lang: Lang) {
    let w = words(lang);
    let _ = write!(
        out,
        r#"<h2 id="freshness">{}</h2><p class="meta">{}</p><ul class="streams">"#,
        w.data_as_of, w.data_as_of_meta
    );
    for s in Stream::ALL {
        let f = streams[s.index()];
        let mark = f.watermark.map_or_else(|| w.no_watermark.to_string(), tick);
        let lag = f.lag.map_or_else(String::new, |l| match lang {
            Lang::En => format!(", {} {}", number(l as f64), w.unread),
            Lang::Zh => format!("，{} {}", l, w.unread),
        });
        let _ = write!(
            out,
            r#"<li data-stream="{}" data-watermark="{}"><strong>{}</strong>: {mark}{lag}</li>"#,
            s.as_str(),
            f.watermark.map_or(String::new(), |t| t.to_string()),
            s.title().get(lang)
        );
    }
    out.push_str("</ul>");
}

/// The tolerance every planned series uses, when they share one.
fn common_tolerance(planned: &[PlannedView]) -> Option<f64> {
    let first = planned.first()?.plan.tolerance;
    planned
        .iter()
        .all(|v| v.plan.tolerance == first)
        .then_some(first)
}

/// Renders the whole page.
pub fn render(input: &PageInput<'_>) -> String {
    let snap = input.snapshot;
    let lang = input.lang;
    let w = words(lang);
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        r#"<!doctype html><html lang="{}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta http-equiv="refresh" content="{}"><title>paceline · {}</title><style>{STYLE}</style></head><body>"#,
        w.html_lang, input.refresh_s, w.title
    );
    let (class, label) = if input.health.ready {
        ("ok", w.ready)
    } else {
        ("bad", w.not_ready)
    };
    // The switch keeps the language in the address, so the page's refresh keeps it too.
    let _ = write!(
        out,
        r#"<header><nav class="lang"><a href="?lang=en" hreflang="en" lang="en">English</a><a href="?lang=zh" hreflang="zh" lang="zh-CN">中文</a></nav><h1>{}</h1><p class="health {class}" id="health">{label}: {}</p><p class="meta">paceline {} ({}) · {} {} (UTC+08:00) · {} s</p></header>"#,
        w.title,
        escape(&input.health.detail),
        env!("CARGO_PKG_VERSION"),
        escape(input.mode),
        w.rendered,
        tick(input.now),
        input.refresh_s
    );
    if let Some(c) = input.cluster {
        cluster_note(&mut out, c, input.unanswered, lang);
    }
    let _ = write!(
        out,
        r#"<main><h2 id="planned">{}</h2><p class="explain" id="explain">{}</p>"#,
        w.planned,
        explanation(lang, common_tolerance(&snap.planned))
    );
    out.push_str(r#"<p class="legend">"#);
    for item in w.legend {
        let _ = write!(out, "<span>{item}</span> ");
    }
    out.push_str(r#"</p><div class="scroll"><table class="plan"><thead><tr>"#);
    for (i, c) in w.columns.iter().enumerate() {
        let class = if (1..=5).contains(&i) {
            r#" class="num""#
        } else {
            ""
        };
        let _ = write!(out, "<th{class}>{c}</th>");
    }
    out.push_str("</tr></thead><tbody>");
    for view in &snap.planned {
        // A row without data whose process did not answer says so; the others show
        // what their process sent.
        let elsewhere = input
            .cluster
            .and_then(|c| c.elsewhere(view.plan.series))
            .filter(|p| input.unanswered.iter().any(|u| u.process == *p))
            .map(|p| p.to_string());
        planned_row(&mut out, view, elsewhere.as_deref(), lang);
    }
    out.push_str("</tbody></table></div>");
    breakdowns(&mut out, &snap.latest, lang);
    freshness(&mut out, &snap.streams, lang);
    let _ = write!(
        out,
        r#"</main><footer><p class="meta">{}: <a href="/api/v1/indicators">/api/v1/indicators</a> · <a href="/metrics">/metrics</a> · <a href="/readyz">/readyz</a></p></footer></body></html>"#,
        w.machine
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::Board;
    use paceline_model::config::PlanSpec;
    use paceline_model::point::VerdictFields;
    use paceline_model::time::{parse_rfc3339, DAY};
    use paceline_model::SeriesKey;

    fn at(s: &str) -> Nanos {
        parse_rfc3339(s).unwrap()
    }

    /// Quasi-unicorns behind, no verdict date; core revenue judged missed at 2025-02-15.
    fn snapshot() -> Snapshot {
        let unicorns = SeriesKey::plain(Indicator::QuasiUnicorns);
        let revenue = SeriesKey::plain(Indicator::CoreIndustryRevenueCny);
        let plans = vec![
            PlanSpec {
                series: unicorns,
                kind: PlanKind::Cumulative,
                target: 10.0,
                start: 0,
                deadline: 100 * DAY,
                tolerance: 0.9,
                verdict_tick: i64::MAX,
            },
            PlanSpec {
                series: revenue,
                kind: PlanKind::Cumulative,
                target: 5.5e9,
                start: at("2022-01-01T00:00:00+08:00"),
                deadline: at("2025-01-01T00:00:00+08:00"),
                tolerance: 0.9,
                verdict_tick: at("2025-02-15T00:00:00+08:00"),
            },
        ];
        let board = Board::new(plans);
        let pts: Vec<Point> = (1..=50)
            .map(|d| {
                let fields = Fields {
                    value: (d / 10) as f64,
                    target: Some(10.0),
                    expected: Some(d as f64 / 10.0),
                    pace_ratio: Some(0.5),
                    projected: Some(7.5),
                    status: Some(Status::Behind),
                };
                Point::indicator(unicorns, d * DAY, fields, false)
            })
            .chain([
                Point::indicator(
                    SeriesKey::tagged(Indicator::ClusterEnterprises, 0),
                    50 * DAY,
                    Fields::value(42.0),
                    false,
                ),
                Point::indicator(
                    revenue,
                    at("2025-02-15T00:00:00+08:00"),
                    Fields {
                        value: 5.25e9,
                        target: Some(5.5e9),
                        expected: Some(5.5e9),
                        pace_ratio: Some(0.95),
                        projected: Some(5.25e9),
                        status: Some(Status::AtRisk),
                    },
                    false,
                ),
                Point::verdict(
                    revenue,
                    at("2025-02-15T00:00:00+08:00"),
                    VerdictFields::judge(Some(5.25e9), 5.5e9),
                    false,
                ),
            ])
            .collect();
        board.record(&pts);
        board.snapshot()
    }

    fn page(lang: Lang) -> String {
        let snap = snapshot();
        render(&PageInput {
            mode: "demo",
            snapshot: &snap,
            health: Health {
                ready: false,
                detail: "sink <down>".into(),
            },
            now: 0,
            refresh_s: 15,
            cluster: None,
            unanswered: &[],
            lang,
        })
    }

    #[test]
    fn page_has_a_row_a_badge_and_a_chart_per_planned_series() {
        let html = page(Lang::En);
        assert_eq!(html.matches(r#"<tr class="indicator""#).count(), 2);
        assert!(html.contains(r#"data-series="quasi_unicorns""#));
        assert!(html.contains(r#"data-value="5""#));
        assert!(html.contains(r#"data-status="behind""#));
        assert!(html.contains("✕ behind"));
        assert_eq!(html.matches("<svg").count(), 2);
        assert!(html.contains(r#"class="value""#) && html.contains(r#"class="pace""#));
        // The pace line is continued to the deadline at the target: x = 300 at y(10).
        assert!(html.contains("300.0,"));
        assert!(html.contains("Service not ready: sink &lt;down&gt;"));
        assert!(html.contains(r#"data-tag="cluster""#) && html.contains("Cybersecurity"));
        assert!(!html.contains("<script"));
        assert!(html.contains(r#"http-equiv="refresh" content="15""#));
    }

    #[test]
    fn english_page_reads_titles_units_and_verdicts() {
        let html = page(Lang::En);
        assert!(html.contains(r#"<html lang="en">"#));
        assert!(html.contains(
            r#"<span class="title">Core digital-economy industry revenue, last four quarters</span>"#
        ));
        // The identifier stays, small.
        assert!(html.contains(r#"<code class="id">core_industry_revenue_cny</code>"#));
        // 5.25e9 is CNY 5.25 bn; 5.5e9 CNY 5.50 bn; a pace ratio of 0.95 reads 95.0 %.
        assert!(html.contains(r#"data-field="value" data-label="Value">CNY 5.25 bn<"#));
        assert!(html.contains(r#"data-field="target" data-label="Target">CNY 5.50 bn<"#));
        assert!(html.contains(r#"data-field="pace_ratio" data-label="Pace">95.0 %<"#));
        assert!(html.contains(r#"data-verdict="missed""#));
        assert!(html.contains("✕ missed</span><small>2024 revenue, complete 2025-02-15</small>"));
        // The tolerance is explained with its value.
        assert!(html.contains("<em>at risk</em> from 90.0 %"));
        assert!(html.contains("Enterprise filings"));
    }

    #[test]
    fn chinese_page_reads_the_catalogues_chinese() {
        let html = page(Lang::Zh);
        assert!(html.contains(r#"<html lang="zh-CN">"#));
        assert!(html.contains(r#"<span class="title">准独角兽企业</span>"#));
        assert!(
            html.contains(r#"<span class="title">数字经济核心产业营业收入（近四个季度）</span>"#)
        );
        assert!(html.contains("✕ 进度滞后"));
        assert!(html.contains("▲ 存在风险"));
        // 5.25e9 CNY is 52.50 亿元.
        assert!(html.contains(r#"data-field="value" data-label="当前值">52.50 亿元<"#));
        assert!(
            html.contains("✕ 未完成</span><small>2024年营业收入，数据于 2025-02-15 齐全</small>")
        );
        assert!(html.contains("网络安全"));
        assert!(html.contains("企业申报数据"));
        assert!(!html.contains("Planned indicators"));
    }

    #[test]
    fn language_by_query_then_configuration_then_browser() {
        assert_eq!(
            choose_language(Some("zh"), Some(Lang::En), Some("en")),
            Lang::Zh
        );
        assert_eq!(
            choose_language(Some("xx"), Some(Lang::Zh), Some("en")),
            Lang::Zh
        );
        assert_eq!(
            choose_language(None, None, Some("zh-CN,zh;q=0.9")),
            Lang::Zh
        );
        assert_eq!(
            choose_language(None, Some(Lang::En), Some("zh-CN")),
            Lang::En
        );
        assert_eq!(choose_language(None, None, Some("fr")), Lang::En);
        assert_eq!(choose_language(None, None, None), Lang::En);
    }
}
