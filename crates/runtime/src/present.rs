//! How numbers, ticks and statuses are written for people: the one place the demo's table,
//! the replay summary and the status page take their spelling from. Names and units come
//! from the model's catalogue (`paceline_model::names`); this module puts them in sentences.

use paceline_model::config::{PlanKind, PlanSpec};
use paceline_model::names::{Lang, Unit};
use paceline_model::point::{Status, Verdict};
use paceline_model::time::format_plan_time;
use paceline_model::{Indicator, Nanos};

/// A number as people read it: whole numbers exactly, with thousands separators; others
/// with 2 decimals from 100 up and 4 below (pace ratios, growth rates).
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let decimals = if v.fract() == 0.0 && v.abs() < 1e15 {
        0
    } else if v.abs() >= 100.0 {
        2
    } else {
        4
    };
    let text = format!("{:.*}", decimals, v.abs());
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let mut grouped = String::with_capacity(text.len() + text.len() / 3);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if v < 0.0 && text.bytes().any(|b| b.is_ascii_digit() && b != b'0') {
        "-"
    } else {
        ""
    };
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

/// A number in a narrow column: billions and millions shortened (`20.31 bn`, `3.07 M`),
/// the rest as [`number`].
pub fn compact(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 && a.is_finite() {
        format!("{:.2} bn", v / 1e9)
    } else if a >= 1e6 && a.is_finite() {
        format!("{:.2} M", v / 1e6)
    } else {
        number(v)
    }
}

/// An optional number, `–` when absent.
pub fn maybe(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), number)
}

/// A tick in the plan's time zone, to the minute: `2024-05-10 00:00`.
pub fn tick(t: Nanos) -> String {
    let s = format_plan_time(t);
    // `YYYY-MM-DDTHH:MM:SS…+08:00`: ticks fall on whole minutes.
    format!("{} {}", &s[..10], &s[11..16])
}

/// A day in the plan's time zone: `2024-05-10`.
pub fn day(t: Nanos) -> String {
    format_plan_time(t)[..10].to_string()
}

/// A status as a label that means the same without colour.
pub fn status_label(s: Option<Status>) -> &'static str {
    match s {
        Some(Status::Met) => "met",
        Some(Status::OnTrack) => "on track",
        Some(Status::AtRisk) => "at risk",
        Some(Status::Behind) => "behind",
        None => "no plan yet",
    }
}

/// A status's title in `lang`; a series with no pace fields yet reads "no plan yet".
pub fn status_title(s: Option<Status>, lang: Lang) -> &'static str {
    match (s, lang) {
        (Some(s), _) => s.title().get(lang),
        (None, Lang::En) => "no plan yet",
        (None, Lang::Zh) => "尚无进度",
    }
}

/// A verdict's title in `lang`.
pub fn verdict_title(v: Verdict, lang: Lang) -> &'static str {
    v.title().get(lang)
}

/// A value of `indicator` as people read it (its unit's spelling).
pub fn shown(indicator: Indicator, v: Option<f64>, lang: Lang) -> String {
    v.map_or_else(|| "–".into(), |v| indicator.unit().format(v, lang))
}

/// A pace ratio as people read it: a percentage.
pub fn shown_pace(v: Option<f64>, lang: Lang) -> String {
    v.map_or_else(|| "–".into(), |v| Unit::Percent.format(v, lang))
}

/// Whether a plan's verdict tick is a real date (tests use "never").
pub fn has_verdict_date(plan: &PlanSpec) -> bool {
    plan.verdict_tick < i64::MAX / 2
}

/// What a verdict judges, and when its data is complete: "2024 revenue, complete
/// 2025-02-15" for a revenue goal due 2025-01-01 (docs/indicators.md, "Verdicts"), "value
/// at the deadline, 2025-01-01" for an indicator without data lag.
pub fn verdict_basis(plan: &PlanSpec, lang: Lang) -> String {
    let indicator = plan.series.indicator;
    let judged = day(plan.verdict_tick);
    let deadline = format_plan_time(plan.deadline);
    if !indicator.lags_filings() {
        return match (judged == deadline[..10], lang) {
            (true, Lang::En) => format!("value at the deadline, {judged}"),
            (true, Lang::Zh) => format!("截止日 {judged} 的数值"),
            (false, Lang::En) => format!("value on {judged}, the first tick after the deadline"),
            (false, Lang::Zh) => format!("截止日后首个时点 {judged} 的数值"),
        };
    }
    // A deadline at a new year's midnight closes a calendar year: name the year.
    let year = deadline[..4]
        .parse::<i32>()
        .ok()
        .filter(|_| &deadline[4..16] == "-01-01T00:00")
        .map(|y| y - 1);
    let what = match (indicator, lang) {
        (Indicator::DigitalEconomyAddedValueCny, Lang::En) => "added value",
        (Indicator::DigitalEconomyAddedValueCny, Lang::Zh) => "增加值",
        (_, Lang::En) => "revenue",
        (_, Lang::Zh) => "营业收入",
    };
    match (year, indicator, lang) {
        (Some(y), Indicator::DigitalEconomyAddedValueGrowth, Lang::En) => {
            format!("{y} against {}, complete {judged}", y - 1)
        }
        (Some(y), Indicator::DigitalEconomyAddedValueGrowth, Lang::Zh) => {
            format!("{y}年对比{}年，数据于 {judged} 齐全", y - 1)
        }
        (Some(y), _, Lang::En) => format!("{y} {what}, complete {judged}"),
        (Some(y), _, Lang::Zh) => format!("{y}年{what}，数据于 {judged} 齐全"),
        (None, _, Lang::En) => format!(
            "the four quarters to {}, complete {judged}",
            &deadline[..10]
        ),
        (None, _, Lang::Zh) => format!("截至 {} 的四个季度，数据于 {judged} 齐全", &deadline[..10]),
    }
}

/// A plan item's kind in `lang`.
pub fn kind_title(kind: PlanKind, lang: Lang) -> &'static str {
    match (kind, lang) {
        (PlanKind::Cumulative, Lang::En) => "cumulative",
        (PlanKind::Cumulative, Lang::Zh) => "累计型",
        (PlanKind::Threshold, Lang::En) => "threshold",
        (PlanKind::Threshold, Lang::Zh) => "达标型",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well_and_keep_their_precision() {
        assert_eq!(number(0.0), "0");
        assert_eq!(number(12.0), "12");
        assert_eq!(number(-1234.0), "-1,234");
        assert_eq!(number(5_500_000_000.0), "5,500,000,000");
        assert_eq!(number(5_512_345_678.5), "5,512,345,678.50");
        assert_eq!(number(0.87346), "0.8735");
        assert_eq!(number(-0.00001), "0.0000");
        assert_eq!(number(123.456), "123.46");
        assert_eq!(number(999_999.999), "1,000,000.00");
        assert_eq!(maybe(None), "–");
        assert_eq!(compact(20_308_854_377.21), "20.31 bn");
        assert_eq!(compact(-3_069_188.5), "-3.07 M");
        assert_eq!(compact(999_999.0), "999,999");
    }

    #[test]
    fn ticks_are_plan_local() {
        // 2024-05-09T16:00Z is midnight on 2024-05-10 in UTC+08:00.
        let t = 1_715_270_400 * 1_000_000_000;
        assert_eq!(tick(t), "2024-05-10 00:00");
        assert_eq!(day(t), "2024-05-10");
    }

    #[test]
    fn a_verdict_says_what_it_judged_and_when_the_data_was_complete() {
        use paceline_model::time::parse_rfc3339;
        use paceline_model::SeriesKey;
        let at = |s: &str| parse_rfc3339(s).unwrap();
        let plan = |indicator, deadline: &str, verdict: &str| PlanSpec {
            series: SeriesKey::plain(indicator),
            kind: PlanKind::Cumulative,
            target: 1.0,
            start: at("2022-01-01T00:00:00+08:00"),
            deadline: at(deadline),
            tolerance: 0.9,
            verdict_tick: at(verdict),
        };
        let revenue = plan(
            Indicator::CoreIndustryRevenueCny,
            "2025-01-01T00:00:00+08:00",
            "2025-02-15T00:00:00+08:00",
        );
        assert_eq!(
            verdict_basis(&revenue, Lang::En),
            "2024 revenue, complete 2025-02-15"
        );
        assert_eq!(
            verdict_basis(&revenue, Lang::Zh),
            "2024年营业收入，数据于 2025-02-15 齐全"
        );
        let growth = plan(
            Indicator::DigitalEconomyAddedValueGrowth,
            "2026-01-01T00:00:00+08:00",
            "2026-02-15T00:00:00+08:00",
        );
        assert_eq!(
            verdict_basis(&growth, Lang::En),
            "2025 against 2024, complete 2026-02-15"
        );
        let mid_year = plan(
            Indicator::ClusterRevenueCny,
            "2025-07-01T00:00:00+08:00",
            "2025-08-15T00:00:00+08:00",
        );
        assert_eq!(
            verdict_basis(&mid_year, Lang::En),
            "the four quarters to 2025-07-01, complete 2025-08-15"
        );
        let count = plan(
            Indicator::QuasiUnicorns,
            "2025-01-01T00:00:00+08:00",
            "2025-01-01T00:00:00+08:00",
        );
        assert_eq!(
            verdict_basis(&count, Lang::En),
            "value at the deadline, 2025-01-01"
        );
        assert_eq!(verdict_basis(&count, Lang::Zh), "截止日 2025-01-01 的数值");
    }
}
