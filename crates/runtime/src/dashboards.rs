//! The "Plan pace" Grafana dashboard, generated from the plan and the model's catalogue of
//! names (`paceline dashboards`), so that its titles, units and value mappings never drift
//! from what the status page and the API say. One file per language; both are checked in
//! under `deploy/grafana/dashboards/`, and a test regenerates them and compares.
//!
//! Every query is InfluxQL on the measurements the service writes (docs/outputs.md), so one
//! dashboard serves InfluxDB 1.x and 2.x (through its v1 compatibility API).

use std::path::{Path, PathBuf};

use paceline_model::catalogue::TagKind;
use paceline_model::config::{Config, PlanSpec};
use paceline_model::names::{Lang, Unit};
use paceline_model::point::{Status, Verdict};
use paceline_model::{Indicator, Stream};
use serde_json::{json, Value};

use crate::present::day;

/// The data source the provisioning in `deploy/grafana/provisioning/` defines.
const INFLUX: &str = "paceline-influxdb";

/// The dashboard file of `lang`: `plan-pace-en.json`, `plan-pace-zh.json`.
pub fn file_name(lang: Lang) -> String {
    format!("plan-pace-{}.json", lang.code())
}

/// Writes the dashboard of each language in `langs` into `dir`; the paths written.
pub fn write(config: &Config, langs: &[Lang], dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for lang in langs {
        let path = dir.join(file_name(*lang));
        let mut text = serde_json::to_string_pretty(&plan_pace(config, *lang))
            .map_err(std::io::Error::other)?;
        text.push('\n');
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

/// The dashboard's own words, in one language.
struct Words {
    title: &'static str,
    description: &'static str,
    about: &'static str,
    explanation: &'static str,
    data_as_of: &'static str,
    goals: &'static str,
    goals_description: &'static str,
    verdicts: &'static str,
    verdicts_description: &'static str,
    charts: &'static str,
    breakdowns: &'static str,
    /// Column and series names: indicator, tag, as of, value, expected, target, pace,
    /// projected, status, verdict, verdict date.
    columns: [&'static str; 11],
    target_by: &'static str,
    unit_groups: [&'static str; 3],
}

const EN: Words = Words {
    title: "Plan pace",
    description: "The district's action-plan goals: where each stands, whether it is on pace, and at each deadline whether it was met.",
    about: "How to read this dashboard",
    explanation: "**Expected** is where the plan's straight line stands at each date, from the value at the plan's start to the target at the deadline. **Pace** is the progress made as a share of the progress expected.\n\n\
A goal is **on track** at a pace of 100 % or more, **at risk** from its tolerance (90 % unless the plan sets another), **behind** below it, and **met** once its value reaches the target. \
Once the data for the deadline is complete (revenue filings arrive 45 days after a quarter), each goal is judged **met** or **missed**: that is its verdict.\n\n\
On the charts: the value is the solid line, the plan's pace the dashed line, the target the dotted line, the projection to the deadline the marked line.",
    data_as_of: "Data as of",
    goals: "Planned goals",
    goals_description: "Each planned series at its own newest date: value, expected, target, pace, projection and status.",
    verdicts: "Verdicts",
    verdicts_description: "Each goal judged at its verdict date (the deadline, plus the data's lag): met or missed, with the value judged and the target.",
    charts: "Value against the plan's pace",
    breakdowns: "Breakdowns",
    columns: [
        "Indicator",
        "Breakdown",
        "As of",
        "Value",
        "Expected",
        "Target",
        "Pace",
        "Projected",
        "Status",
        "Verdict",
        "Judged on",
    ],
    target_by: "target {target} by {deadline}",
    unit_groups: ["counts", "money", "rates"],
};

const ZH: Words = Words {
    title: "规划进度",
    description: "行动计划各项目标：当前进展、是否按进度推进，以及截止日是否完成。",
    about: "如何阅读本看板",
    explanation: "**应达值**：从计划起始时的数值到截止日目标值的直线在各日期的位置。**进度**：实际增长占应达增长的比例。\n\n\
进度达到 100% 为**按进度推进**，不低于容差（默认 90%）为**存在风险**，低于容差为**进度滞后**，数值达到目标即为**已完成**。\
截止日的数据齐全后（营业收入申报在季度结束后 45 天到齐），评定每项目标**已完成**或**未完成**。\n\n\
图中：实线为当前值，虚线为计划进度，点线为目标值，带标记的线为截止日预测。",
    data_as_of: "数据截至",
    goals: "规划目标",
    goals_description: "各规划指标在其最新日期的当前值、应达值、目标值、进度、预测和状态。",
    verdicts: "目标评定",
    verdicts_description: "各目标在评定日（截止日加数据滞后期）评定为已完成或未完成，附评定时的数值与目标值。",
    charts: "当前值与计划进度",
    breakdowns: "分项",
    columns: [
        "指标",
        "分项",
        "数据截至",
        "当前值",
        "应达值",
        "目标值",
        "进度",
        "预计到期值",
        "状态",
        "评定",
        "评定日",
    ],
    target_by: "目标 {target}，截止 {deadline}",
    unit_groups: ["数量", "金额", "比率"],
};

fn words(lang: Lang) -> &'static Words {
    match lang {
        Lang::En => &EN,
        Lang::Zh => &ZH,
    }
}

/// Grafana's unit for an indicator's values.
fn grafana_unit(unit: Unit) -> &'static str {
    match unit {
        Unit::Cny => "currencyCNY",
        Unit::Percent => "percentunit",
        _ => "none",
    }
}

/// Which of the goal tables a unit's series go to: counts, money, rates.
fn unit_group(unit: Unit) -> usize {
    match unit {
        Unit::Cny => 1,
        Unit::Percent => 2,
        _ => 0,
    }
}

fn datasource() -> Value {
    json!({ "type": "influxdb", "uid": INFLUX })
}

/// An InfluxQL target.
fn target(ref_id: &str, query: String, format: &str, alias: Option<&str>) -> Value {
    let mut t = json!({
        "refId": ref_id,
        "datasource": datasource(),
        "rawQuery": true,
        "query": query,
        "resultFormat": format,
    });
    if let Some(a) = alias {
        t["alias"] = a.into();
    }
    t
}

/// A value mapping from identifiers to titles, with a colour where given.
fn mapping(entries: &[(&str, String, Option<&str>)]) -> Value {
    let mut options = serde_json::Map::new();
    for (i, (id, text, colour)) in entries.iter().enumerate() {
        let mut o = json!({ "text": text, "index": i });
        if let Some(c) = colour {
            o["color"] = (*c).into();
        }
        options.insert((*id).to_string(), o);
    }
    json!({ "type": "value", "options": options })
}

/// Statuses by title, coloured as on the status page (the mark repeats it in shape).
fn status_mapping(lang: Lang) -> Value {
    let entry = |s: Status, mark: &str, colour| {
        (
            s.as_str(),
            format!("{mark} {}", s.title().get(lang)),
            Some(colour),
        )
    };
    mapping(&[
        entry(Status::Met, "✓", "green"),
        entry(Status::OnTrack, "↗", "blue"),
        entry(Status::AtRisk, "▲", "orange"),
        entry(Status::Behind, "✕", "red"),
    ])
}

fn verdict_mapping(lang: Lang) -> Value {
    let entry = |v: Verdict, mark: &str, colour| {
        (
            v.as_str(),
            format!("{mark} {}", v.title().get(lang)),
            Some(colour),
        )
    };
    mapping(&[
        entry(Verdict::Met, "✓", "green"),
        entry(Verdict::Missed, "✕", "red"),
    ])
}

/// The indicators' identifiers to their titles.
fn indicator_mapping(indicators: &[Indicator], lang: Lang) -> Value {
    let entries: Vec<(&str, String, Option<&str>)> = indicators
        .iter()
        .map(|i| (i.name(), i.title().get(lang).to_string(), None))
        .collect();
    mapping(&entries)
}

/// A tag kind's values: identifier and title.
fn tag_values(kind: TagKind, lang: Lang) -> Vec<(&'static str, String)> {
    kind.tags()
        .into_iter()
        .filter_map(|tag| Some((kind.value(tag)?, kind.title(tag)?.get(lang).to_string())))
        .collect()
}

/// An override of the fields named `name`.
fn by_name(name: &str, properties: Value) -> Value {
    json!({ "matcher": { "id": "byName", "options": name }, "properties": properties })
}

/// The identifier and tag columns of a table of `indicators`' series, shown by title.
fn identity_overrides(indicators: &[Indicator], lang: Lang) -> Vec<Value> {
    let w = words(lang);
    let mut out = vec![by_name(
        "indicator",
        json!([
            { "id": "displayName", "value": w.columns[0] },
            { "id": "mappings", "value": [indicator_mapping(indicators, lang)] },
            { "id": "custom.minWidth", "value": 260 }
        ]),
    )];
    let mut kinds: Vec<TagKind> = Vec::new();
    for kind in indicators.iter().map(|i| i.tag_kind()) {
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    for kind in kinds {
        if let Some(key) = kind.key() {
            let entries: Vec<(&str, String, Option<&str>)> = tag_values(kind, lang)
                .into_iter()
                .map(|(id, t)| (id, t, None))
                .collect();
            out.push(by_name(
                key,
                json!([
                    { "id": "displayName", "value": w.columns[1] },
                    { "id": "mappings", "value": [mapping(&entries)] }
                ]),
            ));
        }
    }
    out
}

/// A regex of the indicators' names: `^(a|b)$`.
fn indicator_regex<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut names: Vec<&str> = names.collect();
    names.sort_unstable();
    names.dedup();
    format!("/^({})$/", names.join("|"))
}

/// A table of the planned series of one unit group, each at its own newest tick: one
/// selector (`last`) with the other fields, so the row's time is that point's.
fn goals_table(
    config: &Config,
    plans: &[PlanSpec],
    group: usize,
    lang: Lang,
    id: u32,
    y: u32,
) -> Option<Value> {
    let w = words(lang);
    let members: Vec<&PlanSpec> = plans
        .iter()
        .filter(|p| unit_group(p.series.indicator.unit()) == group)
        .collect();
    let unit = grafana_unit(members.first()?.series.indicator.unit());
    let query = format!(
        r#"SELECT last("value") AS "value", "expected", "target", "pace_ratio", "projected", "status" FROM "{}" WHERE "indicator" =~ {} AND "target" > 0 AND $timeFilter GROUP BY *"#,
        config.indicators.measurement,
        indicator_regex(members.iter().map(|p| p.series.indicator.name()))
    );
    let indicators: Vec<Indicator> = members.iter().map(|p| p.series.indicator).collect();
    let mut overrides = identity_overrides(&indicators, lang);
    overrides.extend([
        by_name(
            "Time",
            json!([
                { "id": "displayName", "value": w.columns[2] },
                { "id": "unit", "value": "dateTimeAsIso" }
            ]),
        ),
        by_name(
            "value",
            json!([{ "id": "displayName", "value": w.columns[3] }]),
        ),
        by_name(
            "expected",
            json!([{ "id": "displayName", "value": w.columns[4] }]),
        ),
        by_name(
            "target",
            json!([{ "id": "displayName", "value": w.columns[5] }]),
        ),
        by_name(
            "pace_ratio",
            json!([
                { "id": "displayName", "value": w.columns[6] },
                { "id": "unit", "value": "percentunit" },
                { "id": "decimals", "value": 1 }
            ]),
        ),
        by_name(
            "projected",
            json!([{ "id": "displayName", "value": w.columns[7] }]),
        ),
        by_name(
            "status",
            json!([
                { "id": "displayName", "value": w.columns[8] },
                { "id": "mappings", "value": [status_mapping(lang)] },
                { "id": "custom.cellOptions", "value": { "type": "color-background" } }
            ]),
        ),
    ]);
    let decimals = if unit == "none" { 0 } else { 2 };
    Some(json!({
        "id": id,
        "title": format!("{} ({})", w.goals, w.unit_groups[group]),
        "description": w.goals_description,
        "type": "table",
        "datasource": datasource(),
        "gridPos": { "x": 0, "y": y, "w": 24, "h": 2 + 2 * members.len().max(2) as u32 },
        "targets": [target("A", query, "table", None)],
        "transformations": [{ "id": "merge", "options": {} }],
        "fieldConfig": {
            "defaults": { "unit": unit, "decimals": decimals, "custom": { "align": "auto" } },
            "overrides": overrides
        },
        "options": { "showHeader": true, "cellHeight": "sm" }
    }))
}

/// Each planned series' verdict, at its verdict tick.
fn verdicts_table(config: &Config, plans: &[PlanSpec], lang: Lang, id: u32, y: u32) -> Value {
    let rows = plans.len();
    let indicators: Vec<Indicator> = plans.iter().map(|p| p.series.indicator).collect();
    let w = words(lang);
    let query = format!(
        r#"SELECT last("verdict") AS "verdict", "value", "target" FROM "{}" WHERE $timeFilter GROUP BY *"#,
        config.indicators.verdict_measurement
    );
    let mut overrides = identity_overrides(&indicators, lang);
    overrides.extend([
        by_name(
            "Time",
            json!([
                { "id": "displayName", "value": w.columns[10] },
                { "id": "unit", "value": "dateTimeAsIso" }
            ]),
        ),
        by_name(
            "verdict",
            json!([
                { "id": "displayName", "value": w.columns[9] },
                { "id": "mappings", "value": [verdict_mapping(lang)] },
                { "id": "custom.cellOptions", "value": { "type": "color-background" } }
            ]),
        ),
        by_name(
            "value",
            json!([{ "id": "displayName", "value": w.columns[3] }]),
        ),
        by_name(
            "target",
            json!([{ "id": "displayName", "value": w.columns[5] }]),
        ),
    ]);
    json!({
        "id": id,
        "title": w.verdicts,
        "description": w.verdicts_description,
        "type": "table",
        "datasource": datasource(),
        "gridPos": { "x": 0, "y": y, "w": 24, "h": 2 + 2 * rows as u32 },
        "targets": [target("A", query, "table", None)],
        "transformations": [{ "id": "merge", "options": {} }],
        "fieldConfig": { "defaults": { "custom": { "align": "auto" } }, "overrides": overrides },
        "options": { "showHeader": true, "cellHeight": "sm" }
    })
}

/// The newest tick written of each stream's indicators, as that stream's "data as of".
fn data_as_of(config: &Config, lang: Lang, first_id: u32, y: u32) -> Vec<Value> {
    let w = words(lang);
    Stream::ALL
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let names = Indicator::ALL
                .iter()
                .filter(|ind| ind.stream() == *s)
                .map(|ind| ind.name());
            let query = format!(
                r#"SELECT last("value") AS "value" FROM "{}" WHERE "indicator" =~ {} AND $timeFilter"#,
                config.indicators.measurement,
                indicator_regex(names)
            );
            json!({
                "id": first_id + i as u32,
                "title": format!("{} · {}", w.data_as_of, s.title().get(lang)),
                "type": "stat",
                "datasource": datasource(),
                "gridPos": { "x": 16, "y": y + 2 * i as u32, "w": 8, "h": 2 },
                "targets": [target("A", query, "table", None)],
                "fieldConfig": { "defaults": { "unit": "dateTimeAsIso", "color": { "mode": "fixed", "fixedColor": "text" } }, "overrides": [] },
                "options": {
                    "reduceOptions": { "calcs": ["lastNotNull"], "fields": "/^Time$/", "values": false },
                    "colorMode": "none",
                    "graphMode": "none",
                    "textMode": "value"
                }
            })
        })
        .collect()
}

/// The series' field overrides: the value solid, the pace line dashed, the target dotted,
/// the projection marked with points, as on the status page.
fn line_styles(lang: Lang) -> Value {
    let w = words(lang);
    json!([
        by_name(
            "value",
            json!([
                { "id": "displayName", "value": w.columns[3] },
                { "id": "custom.lineWidth", "value": 2 },
                { "id": "color", "value": { "mode": "fixed", "fixedColor": "text" } }
            ])
        ),
        by_name(
            "expected",
            json!([
                { "id": "displayName", "value": w.columns[4] },
                { "id": "custom.lineStyle", "value": { "fill": "dash", "dash": [10, 6] } },
                { "id": "color", "value": { "mode": "fixed", "fixedColor": "blue" } }
            ])
        ),
        by_name(
            "target",
            json!([
                { "id": "displayName", "value": w.columns[5] },
                { "id": "custom.lineStyle", "value": { "fill": "dot", "dash": [0, 6] } },
                { "id": "color", "value": { "mode": "fixed", "fixedColor": "green" } }
            ])
        ),
        by_name(
            "projected",
            json!([
                { "id": "displayName", "value": w.columns[7] },
                { "id": "custom.showPoints", "value": "always" },
                { "id": "custom.lineStyle", "value": { "fill": "dash", "dash": [2, 4] } },
                { "id": "color", "value": { "mode": "fixed", "fixedColor": "orange" } }
            ])
        ),
    ])
}

/// A planned series' chart: its title says the target and the deadline.
fn chart(config: &Config, plan: &PlanSpec, lang: Lang, id: u32, x: u32, y: u32) -> Value {
    let w = words(lang);
    let ind = plan.series.indicator;
    let tag = plan
        .series
        .tag_pair()
        .map(|(k, v)| format!(r#" AND "{k}" = '{v}'"#))
        .unwrap_or_default();
    let query = format!(
        r#"SELECT last("value") AS "value", last("expected") AS "expected", last("target") AS "target", last("projected") AS "projected" FROM "{}" WHERE "indicator" = '{}'{tag} AND $timeFilter GROUP BY time($__interval) fill(none)"#,
        config.indicators.measurement,
        ind.name()
    );
    let goal = w
        .target_by
        .replace("{target}", &ind.unit().format(plan.target, lang))
        .replace("{deadline}", &day(plan.deadline));
    json!({
        "id": id,
        "title": format!("{} — {goal}", plan.series.title(lang)),
        "description": format!("{} · {}", plan.series.display(), w.charts),
        "type": "timeseries",
        "datasource": datasource(),
        "gridPos": { "x": x, "y": y, "w": 12, "h": 8 },
        "targets": [target("A", query, "time_series", Some("$col"))],
        "fieldConfig": {
            "defaults": {
                "unit": grafana_unit(ind.unit()),
                "min": 0,
                "custom": { "lineInterpolation": "stepAfter", "showPoints": "never", "spanNulls": true }
            },
            "overrides": line_styles(lang)
        },
        "options": { "legend": { "displayMode": "list", "placement": "bottom" }, "tooltip": { "mode": "multi" } }
    })
}

/// A breakdown of a tagged indicator's series by tag value, each series by its title.
fn breakdown(config: &Config, ind: Indicator, lang: Lang, id: u32, x: u32, y: u32) -> Value {
    let key = ind.tag_kind().key().unwrap_or_default();
    let query = format!(
        r#"SELECT last("value") FROM "{}" WHERE "indicator" = '{}' AND $timeFilter GROUP BY time($__interval), "{key}" fill(none)"#,
        config.indicators.measurement,
        ind.name()
    );
    let renames: Vec<Value> = tag_values(ind.tag_kind(), lang)
        .into_iter()
        .map(|(id, title)| {
            json!({ "id": "renameByRegex", "options": { "regex": format!("^{id}$"), "renamePattern": title } })
        })
        .collect();
    json!({
        "id": id,
        "title": ind.title().get(lang),
        "description": ind.name(),
        "type": "timeseries",
        "datasource": datasource(),
        "gridPos": { "x": x, "y": y, "w": 12, "h": 8 },
        "targets": [target("A", query, "time_series", Some(&format!("$tag_{key}")))],
        "transformations": renames,
        "fieldConfig": {
            "defaults": { "unit": grafana_unit(ind.unit()), "custom": { "lineInterpolation": "stepAfter", "showPoints": "never" } },
            "overrides": []
        },
        "options": { "legend": { "displayMode": "list", "placement": "right" }, "tooltip": { "mode": "multi" } }
    })
}

fn row(title: &str, id: u32, y: u32) -> Value {
    json!({ "id": id, "type": "row", "title": title, "collapsed": false, "gridPos": { "x": 0, "y": y, "w": 24, "h": 1 }, "panels": [] })
}

/// The indicators broken down on the dashboard.
const BREAKDOWNS: [Indicator; 6] = [
    Indicator::ClusterRevenueCny,
    Indicator::ClusterEnterprises,
    Indicator::ApplicationScenariosLiveByField,
    Indicator::DemonstrationProjectsUnderwayByRegion,
    Indicator::PlatformAvailability,
    Indicator::PlatformConnectedEnterprises,
];

/// The "Plan pace" dashboard of `config`'s plan in `lang`.
pub fn plan_pace(config: &Config, lang: Lang) -> Value {
    let w = words(lang);
    let plans = config.plan_specs();
    let mut panels = vec![json!({
        "id": 1,
        "title": w.about,
        "type": "text",
        "gridPos": { "x": 0, "y": 0, "w": 16, "h": 6 },
        "options": { "mode": "markdown", "content": w.explanation }
    })];
    panels.extend(data_as_of(config, lang, 2, 0));
    let mut id = 10;
    let mut y = 6;
    for group in 0..3 {
        if let Some(table) = goals_table(config, &plans, group, lang, id, y) {
            y += table["gridPos"]["h"].as_u64().unwrap_or(0) as u32;
            panels.push(table);
            id += 1;
        }
    }
    let verdicts = verdicts_table(config, &plans, lang, id, y);
    y += verdicts["gridPos"]["h"].as_u64().unwrap_or(0) as u32;
    panels.push(verdicts);
    id += 1;
    panels.push(row(w.charts, id, y));
    id += 1;
    y += 1;
    for (i, plan) in plans.iter().enumerate() {
        let (x, dy) = ((i as u32 % 2) * 12, (i as u32 / 2) * 8);
        panels.push(chart(config, plan, lang, id, x, y + dy));
        id += 1;
    }
    y += plans.len().div_ceil(2) as u32 * 8;
    panels.push(row(w.breakdowns, id, y));
    id += 1;
    y += 1;
    for (i, ind) in BREAKDOWNS.iter().enumerate() {
        let (x, dy) = ((i as u32 % 2) * 12, (i as u32 / 2) * 8);
        panels.push(breakdown(config, *ind, lang, id, x, y + dy));
        id += 1;
    }
    json!({
        "uid": format!("paceline-plan-pace-{}", lang.code()),
        "title": format!("paceline · {}", w.title),
        "description": w.description,
        "tags": ["paceline", "plan", lang.code()],
        "schemaVersion": 39,
        "version": 1,
        "editable": false,
        "timezone": "Asia/Shanghai",
        "time": { "from": "now-5y", "to": "now+1y" },
        "refresh": "1m",
        "templating": { "list": [] },
        "annotations": { "list": [] },
        "panels": panels
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_planned_series_has_a_chart_titled_by_its_goal() {
        let config = Config::default();
        let d = plan_pace(&config, Lang::Zh);
        let titles: Vec<&str> = d["panels"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["title"].as_str())
            .collect();
        // Hand-written: 10 quasi-unicorns by 2025-01-01; CNY 5.5 bn is 55.00 亿元.
        assert!(titles.contains(&"准独角兽企业 — 目标 10，截止 2025-01-01"));
        assert!(titles.contains(
            &"数字经济核心产业营业收入（近四个季度） — 目标 55.00 亿元，截止 2025-01-01"
        ));
        let charts = d["panels"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| {
                p["type"] == "timeseries"
                    && p["description"].as_str().is_some_and(|s| s.contains('·'))
            })
            .count();
        assert_eq!(charts, config.plan_specs().len());
        let en = plan_pace(&config, Lang::En);
        assert_eq!(en["uid"], "paceline-plan-pace-en");
        assert_ne!(en["uid"], d["uid"]);
    }
}
