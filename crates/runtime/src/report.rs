//! `paceline report`: the plan's briefing for leadership (docs/outputs.md, "The briefing").
//! It reads only the database the service writes (InfluxQL through `/query`, the same
//! `[influx]` settings and secrets as `serve`): per planned series the newest point at or
//! before the as-of date, the one at the earlier date, the status changes in between, the
//! verdict once written and the history for a chart. It writes one self-contained HTML
//! page (inline CSS and SVG, nothing fetched) that prints on one or two A4 pages.

use std::fmt::Write as _;
use std::path::PathBuf;

use paceline_model::config::PlanSpec;
use paceline_model::names::Lang;
use paceline_model::point::{Fields, Point, Status, Verdict, VerdictFields};
use paceline_model::Nanos;
use paceline_sink::config::InfluxCredentials;
use paceline_sink::read::{InfluxReader, ReadError, Series};

use crate::board::PlannedView;
use crate::page::escape;
use crate::present::{day, has_verdict_date, shown, shown_pace, status_title, verdict_basis};
use crate::settings::Settings;

/// Chart points per series at most: finer than an A4 chart is drawn.
const CHART_POINTS: usize = 240;

/// What to write.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The briefing's date: each series as it stood at or before it.
    pub as_of: Nanos,
    /// The earlier date compared with.
    pub since: Nanos,
    /// Its language.
    pub lang: Lang,
    /// The HTML file written.
    pub out: PathBuf,
}

/// The briefing could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The database failed to answer.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The database holds no point of the measurement.
    #[error("InfluxDB at {url}, database `{database}`: no `{measurement}` points (has `paceline serve` written to it? check influx.database or influx.bucket)")]
    Empty {
        /// The base URL.
        url: String,
        /// The database or bucket.
        database: String,
        /// The measurement.
        measurement: String,
    },
    /// The as-of date is before the first point.
    #[error("--as-of {as_of} is before the first point in the database ({first})")]
    BeforeData {
        /// The date asked for.
        as_of: String,
        /// The first point's day.
        first: String,
    },
    /// The file could not be written.
    #[error("{path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A planned series as the briefing shows it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The plan item, its newest point at the as-of date, its history and verdict.
    pub view: PlannedView,
    /// Its newest point at the earlier date.
    pub before: Option<Point>,
    /// Status changes between the two dates: (tick, from, to).
    pub changes: Vec<(Nanos, Option<Status>, Option<Status>)>,
}

/// What was written: every planned series' entry.
#[derive(Debug, Clone)]
pub struct Briefing {
    /// In the plan's order.
    pub entries: Vec<Entry>,
}

/// The `WHERE` condition selecting one series: its indicator and tag.
fn series_filter(plan: &PlanSpec) -> String {
    let mut w = format!(r#""indicator" = '{}'"#, plan.series.indicator.name());
    if let Some((k, v)) = plan.series.tag_pair() {
        let _ = write!(w, r#" AND "{k}" = '{v}'"#);
    }
    w
}

fn number(s: &Series, row: &[serde_json::Value], column: &str) -> Option<f64> {
    s.get(row, column).and_then(serde_json::Value::as_f64)
}

fn time_of(s: &Series, row: &[serde_json::Value]) -> Option<Nanos> {
    s.get(row, "time").and_then(serde_json::Value::as_i64)
}

fn status_of(s: &Series, row: &[serde_json::Value]) -> Option<Status> {
    s.get(row, "status")
        .and_then(serde_json::Value::as_str)
        .and_then(Status::parse)
}

/// The point of one answer row of the fields' query.
fn point_of(plan: &PlanSpec, s: &Series, row: &[serde_json::Value]) -> Option<Point> {
    let fields = Fields {
        value: number(s, row, "value")?,
        target: number(s, row, "target"),
        expected: number(s, row, "expected"),
        pace_ratio: number(s, row, "pace_ratio"),
        projected: number(s, row, "projected"),
        status: status_of(s, row),
    };
    Some(Point::indicator(
        plan.series,
        time_of(s, row)?,
        fields,
        false,
    ))
}

/// Reads what the briefing needs from the database.
struct Source<'a> {
    reader: &'a InfluxReader,
    measurement: &'a str,
    verdicts: &'a str,
}

impl Source<'_> {
    /// The series' newest point at or before `at`.
    async fn newest(&self, plan: &PlanSpec, at: Nanos) -> Result<Option<Point>, ReadError> {
        let q = format!(
            r#"SELECT last("value") AS "value", "expected", "target", "pace_ratio", "projected", "status" FROM "{}" WHERE {} AND time <= {at}"#,
            self.measurement,
            series_filter(plan)
        );
        let answer = self.reader.query(&q).await?;
        Ok(answer
            .first()
            .and_then(|s| s.values.first().and_then(|row| point_of(plan, s, row))))
    }

    /// The series' history from the plan's start to `at`, thinned to [`CHART_POINTS`].
    async fn history(&self, plan: &PlanSpec, at: Nanos) -> Result<Vec<(Nanos, Fields)>, ReadError> {
        let q = format!(
            r#"SELECT "value", "expected", "target", "pace_ratio", "projected", "status" FROM "{}" WHERE {} AND time >= {} AND time <= {at}"#,
            self.measurement,
            series_filter(plan),
            plan.start
        );
        let answer = self.reader.query(&q).await?;
        let all: Vec<(Nanos, Fields)> = answer
            .iter()
            .flat_map(|s| {
                s.values
                    .iter()
                    .filter_map(move |row| point_of(plan, s, row))
            })
            .map(|p| (p.tick, p.fields))
            .collect();
        // Every n-th point, and always the newest.
        let step = all.len().div_ceil(CHART_POINTS).max(1);
        let last = all.len().saturating_sub(1);
        Ok(all
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % step == 0 || *i == last)
            .map(|(_, p)| p)
            .collect())
    }

    /// The status changes after `since` up to `at`, from the status held at `since`.
    async fn changes(
        &self,
        plan: &PlanSpec,
        before: Option<Status>,
        since: Nanos,
        at: Nanos,
    ) -> Result<Vec<(Nanos, Option<Status>, Option<Status>)>, ReadError> {
        let q = format!(
            r#"SELECT "status" FROM "{}" WHERE {} AND time > {since} AND time <= {at}"#,
            self.measurement,
            series_filter(plan)
        );
        let answer = self.reader.query(&q).await?;
        let mut held = before;
        let mut out = Vec::new();
        for s in &answer {
            for row in &s.values {
                let (Some(t), status) = (time_of(s, row), status_of(s, row)) else {
                    continue;
                };
                if status != held {
                    out.push((t, held, status));
                    held = status;
                }
            }
        }
        Ok(out)
    }

    /// The series' verdict, when written at or before `at`.
    async fn verdict(
        &self,
        plan: &PlanSpec,
        at: Nanos,
    ) -> Result<Option<(Nanos, VerdictFields)>, ReadError> {
        let q = format!(
            r#"SELECT last("verdict") AS "verdict", "value", "target" FROM "{}" WHERE {} AND time <= {at}"#,
            self.verdicts,
            series_filter(plan)
        );
        let answer = self.reader.query(&q).await?;
        let Some(s) = answer.first() else {
            return Ok(None);
        };
        Ok(s.values.first().and_then(|row| {
            let verdict = Verdict::parse(s.get(row, "verdict")?.as_str()?)?;
            let fields = VerdictFields {
                value: number(s, row, "value"),
                target: number(s, row, "target").unwrap_or(plan.target),
                verdict,
            };
            Some((time_of(s, row)?, fields))
        }))
    }

    /// The first point's time, or `None` for an empty database.
    async fn first(&self) -> Result<Option<Nanos>, ReadError> {
        let q = format!(r#"SELECT first("value") FROM "{}""#, self.measurement);
        let answer = self.reader.query(&q).await?;
        Ok(answer
            .first()
            .and_then(|s| s.values.first().and_then(|row| time_of(s, row))))
    }
}

/// Reads the briefing's data from the database.
pub async fn gather(
    settings: &Settings,
    credentials: &InfluxCredentials,
    opts: &ReportOptions,
) -> Result<Briefing, ReportError> {
    let reader = InfluxReader::new(&settings.influx, credentials)?;
    let source = Source {
        reader: &reader,
        measurement: &settings.indicators.measurement,
        verdicts: &settings.indicators.verdict_measurement,
    };
    let first = source.first().await?.ok_or_else(|| ReportError::Empty {
        url: reader.url().into(),
        database: reader.database().into(),
        measurement: settings.indicators.measurement.clone(),
    })?;
    if opts.as_of < first {
        return Err(ReportError::BeforeData {
            as_of: day(opts.as_of),
            first: day(first),
        });
    }
    let mut entries = Vec::new();
    for plan in settings.plan_specs() {
        let latest = source.newest(&plan, opts.as_of).await?;
        let before = source.newest(&plan, opts.since).await?;
        let held = before.as_ref().and_then(|p| p.fields.status);
        let changes = source.changes(&plan, held, opts.since, opts.as_of).await?;
        let chart = source.history(&plan, opts.as_of).await?;
        let verdict = source.verdict(&plan, opts.as_of).await?;
        entries.push(Entry {
            view: PlannedView {
                plan,
                latest,
                chart,
                verdict,
            },
            before,
            changes,
        });
    }
    Ok(Briefing { entries })
}

/// The briefing's own words.
struct Words {
    html_lang: &'static str,
    title: &'static str,
    as_of: &'static str,
    compared: &'static str,
    changed: &'static str,
    no_change: &'static str,
    status_changes: &'static str,
    value_changes: &'static str,
    goals: &'static str,
    columns: [&'static str; 8],
    no_data: &'static str,
    due: &'static str,
    legend: &'static str,
    footer: &'static str,
}

const EN: Words = Words {
    html_lang: "en",
    title: "Plan briefing",
    as_of: "As of",
    compared: "compared with",
    changed: "What changed",
    no_change: "No status changed since the earlier date.",
    status_changes: "Status changes",
    value_changes: "Values",
    goals: "The goals",
    columns: ["Goal", "Value", "Expected", "Target", "Status", "Projected", "Verdict", "Value against pace"],
    no_data: "no data yet",
    due: "judged on",
    legend: "Chart: value solid, the plan's pace (expected) dashed, the target dotted, the projection to the deadline marked. Expected is the straight line from the value at the plan's start to the target at the deadline.",
    footer: "From the paceline database",
};

const ZH: Words = Words {
    html_lang: "zh-CN",
    title: "规划进展简报",
    as_of: "数据截至",
    compared: "对比",
    changed: "变化情况",
    no_change: "与对比日相比，各目标状态没有变化。",
    status_changes: "状态变化",
    value_changes: "数值变化",
    goals: "各项目标",
    columns: ["目标", "当前值", "应达值", "目标值", "状态", "预计到期值", "评定", "走势"],
    no_data: "暂无数据",
    due: "评定日",
    legend: "图例：实线为当前值，虚线为计划进度（应达值），点线为目标值，带标记的线为截止日预测。应达值为从计划起始时的数值到截止日目标值的直线。",
    footer: "数据来源：paceline 数据库",
};

fn words(lang: Lang) -> &'static Words {
    match lang {
        Lang::En => &EN,
        Lang::Zh => &ZH,
    }
}

const STYLE: &str = r#"
@page { size: A4; margin: 12mm; }
* { box-sizing: border-box; }
body { font: 10.5px/1.35 system-ui, "Noto Sans CJK SC", "Microsoft YaHei", sans-serif; color: #1f2328; margin: 0 auto; max-width: 186mm; }
h1 { font-size: 18px; margin: 0 0 2px; } h2 { font-size: 13px; margin: 10px 0 4px; border-bottom: 1px solid #d0d7de; }
p { margin: 2px 0; } .meta { color: #59636e; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 3px 4px; border-bottom: 1px solid #e5e7eb; vertical-align: middle; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
thead th { font-size: 9px; color: #59636e; text-transform: uppercase; }
tr { break-inside: avoid; }
.st-met, .vd-met { color: #1a7f37; } .st-on_track { color: #0b5cad; } .st-at_risk { color: #8a5a00; } .st-behind, .vd-missed { color: #b42318; } .st-none { color: #59636e; }
.badge { font-weight: 600; white-space: nowrap; }
small { display: block; color: #59636e; font-size: 8.5px; }
svg.chart { width: 150px; height: 48px; display: block; }
svg .value { fill: none; stroke: #1f2328; stroke-width: 2; }
svg .pace { fill: none; stroke: #8c959f; stroke-width: 1.5; stroke-dasharray: 5 3; }
svg .target { stroke: #8c959f; stroke-width: 1; stroke-dasharray: 1 3; }
svg .projection { fill: none; stroke: #59636e; stroke-width: 1.5; stroke-dasharray: 2 2; }
svg .axis { fill: #59636e; font-size: 10px; }
ul { margin: 2px 0 4px; padding-left: 16px; }
"#;

fn status_badge(s: Option<Status>, lang: Lang) -> String {
    format!(
        r#"<span class="badge st-{}">{}</span>"#,
        s.map_or("none", Status::as_str),
        status_title(s, lang)
    )
}

/// "What changed": status changes first, then each series' value then and now.
fn changes_section(out: &mut String, b: &Briefing, lang: Lang) {
    let w = words(lang);
    let _ = write!(out, r#"<h2 id="changes">{}</h2>"#, w.changed);
    let mut any = false;
    let _ = write!(
        out,
        r#"<p><strong>{}</strong></p><ul class="status-changes">"#,
        w.status_changes
    );
    for e in &b.entries {
        for (t, from, to) in &e.changes {
            any = true;
            let _ = write!(
                out,
                r#"<li data-series="{}" data-tick="{t}" data-from="{}" data-to="{}">{} · {}: {} → {}</li>"#,
                escape(&e.view.plan.series.display()),
                from.map_or("", Status::as_str),
                to.map_or("", Status::as_str),
                day(*t),
                escape(&e.view.plan.series.title(lang)),
                status_title(*from, lang),
                status_badge(*to, lang),
            );
        }
    }
    if !any {
        let _ = write!(out, "<li>{}</li>", w.no_change);
    }
    let _ = write!(
        out,
        r#"</ul><p><strong>{}</strong></p><ul class="value-changes">"#,
        w.value_changes
    );
    for e in &b.entries {
        let ind = e.view.plan.series.indicator;
        let (Some(now), before) = (&e.view.latest, &e.before) else {
            continue;
        };
        let then = before.as_ref().map(|p| p.fields.value);
        let _ = write!(
            out,
            "<li>{}: {} → {}</li>",
            escape(&e.view.plan.series.title(lang)),
            shown(ind, then, lang),
            shown(ind, Some(now.fields.value), lang)
        );
    }
    out.push_str("</ul>");
}

/// One goal's row.
fn goal_row(out: &mut String, e: &Entry, lang: Lang) {
    let w = words(lang);
    let plan = &e.view.plan;
    let ind = plan.series.indicator;
    let f = e.view.latest.as_ref().map(|p| p.fields);
    let get = |pick: fn(&Fields) -> Option<f64>| f.as_ref().and_then(pick);
    let verdict = match e.view.verdict {
        Some((_, v)) => format!(
            r#"<span class="badge vd-{}">{}</span><small>{}</small>"#,
            v.verdict.as_str(),
            v.verdict.title().get(lang),
            escape(&verdict_basis(plan, lang))
        ),
        None if has_verdict_date(plan) => {
            format!("–<small>{} {}</small>", w.due, day(plan.verdict_tick))
        }
        None => "–".into(),
    };
    let _ = write!(
        out,
        r#"<tr class="goal" data-series="{}" data-tick="{}" data-value="{}" data-expected="{}" data-target="{}" data-projected="{}" data-status="{}" data-verdict="{}"><th scope="row">{}<small>{}</small></th>"#,
        escape(&plan.series.display()),
        e.view
            .latest
            .as_ref()
            .map_or(String::new(), |p| p.tick.to_string()),
        get(|f| Some(f.value)).map_or(String::new(), |v| v.to_string()),
        get(|f| f.expected).map_or(String::new(), |v| v.to_string()),
        get(|f| f.target).map_or(String::new(), |v| v.to_string()),
        get(|f| f.projected).map_or(String::new(), |v| v.to_string()),
        f.and_then(|f| f.status).map_or("", Status::as_str),
        e.view.verdict.map_or("", |(_, v)| v.verdict.as_str()),
        escape(&plan.series.title(lang)),
        e.view.latest.as_ref().map_or_else(
            || w.no_data.to_string(),
            |p| format!("{} {}", words(lang).as_of, day(p.tick))
        ),
    );
    for v in [
        shown(ind, get(|f| Some(f.value)), lang),
        shown(ind, get(|f| f.expected), lang),
        shown(ind, Some(get(|f| f.target).unwrap_or(plan.target)), lang),
    ] {
        let _ = write!(out, r#"<td class="num">{}</td>"#, escape(&v));
    }
    let _ = write!(
        out,
        r#"<td>{}<small>{}</small></td><td class="num">{}</td><td>{verdict}</td><td>{}</td></tr>"#,
        status_badge(f.and_then(|f| f.status), lang),
        shown_pace(get(|f| f.pace_ratio), lang),
        escape(&shown(ind, get(|f| f.projected), lang)),
        crate::page::chart(&e.view, lang),
    );
}

/// The briefing as one self-contained HTML page.
pub fn render(b: &Briefing, opts: &ReportOptions) -> String {
    let lang = opts.lang;
    let w = words(lang);
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        r#"<!doctype html><html lang="{}"><head><meta charset="utf-8"><title>{} · {}</title><style>{STYLE}</style></head><body><header><h1>{}</h1><p class="meta" id="dates" data-as-of="{}" data-since="{}">{} {} · {} {}</p></header><main>"#,
        w.html_lang,
        w.title,
        day(opts.as_of),
        w.title,
        opts.as_of,
        opts.since,
        w.as_of,
        day(opts.as_of),
        w.compared,
        day(opts.since),
    );
    changes_section(&mut out, b, lang);
    let _ = write!(
        out,
        r#"<h2 id="goals">{}</h2><table class="goals"><thead><tr>"#,
        w.goals
    );
    for (i, c) in w.columns.iter().enumerate() {
        let class = if (1..=3).contains(&i) || i == 5 {
            r#" class="num""#
        } else {
            ""
        };
        let _ = write!(out, "<th{class}>{c}</th>");
    }
    out.push_str("</tr></thead><tbody>");
    for e in &b.entries {
        goal_row(&mut out, e, lang);
    }
    let _ = write!(
        out,
        r#"</tbody></table><p class="meta">{}</p></main><footer><p class="meta">{} ({}) · paceline {}</p></footer></body></html>"#,
        w.legend,
        w.footer,
        day(opts.as_of),
        env!("CARGO_PKG_VERSION"),
    );
    out
}

/// A date of the command line: `YYYY-MM-DD` (midnight in the plan's time zone, +08:00) or
/// an RFC 3339 instant.
pub fn parse_date(s: &str) -> Option<Nanos> {
    let s = s.trim();
    if s.len() == 10 {
        return paceline_model::time::parse_rfc3339(&format!("{s}T00:00:00+08:00")).ok();
    }
    paceline_model::time::parse_rfc3339(s).ok()
}

/// Reads the briefing and writes it to `opts.out`.
pub async fn report(
    settings: &Settings,
    credentials: &InfluxCredentials,
    opts: &ReportOptions,
) -> Result<Briefing, ReportError> {
    let briefing = gather(settings, credentials, opts).await?;
    std::fs::write(&opts.out, render(&briefing, opts)).map_err(|source| ReportError::Write {
        path: opts.out.display().to_string(),
        source,
    })?;
    Ok(briefing)
}
