//! The planned indicators as a terminal table: printed by `paceline demo` and at the end
//! of a replay's summary, by title and in each indicator's unit, in English or Chinese.
//! Status is coloured only when asked (a terminal), and always spelled out, so the table
//! means the same in a log file or on a monochrome screen.

use paceline_model::config::PlanSpec;
use paceline_model::names::Lang;
use paceline_model::point::{Point, Status};
use unicode_width::UnicodeWidthStr;

use crate::present::{day, has_verdict_date, shown, shown_pace, status_title, tick, verdict_title};

const COLUMNS: usize = 9;
/// The status column, the one coloured.
const STATUS: usize = 6;

fn headers(lang: Lang) -> [&'static str; COLUMNS] {
    match lang {
        Lang::En => [
            "indicator",
            "as of (+08:00)",
            "value",
            "expected",
            "target",
            "pace",
            "status",
            "projected",
            "verdict",
        ],
        Lang::Zh => [
            "指标",
            "数据截至",
            "当前值",
            "应达值",
            "目标值",
            "进度",
            "状态",
            "预计到期值",
            "评定",
        ],
    }
}

fn colour(status: Option<Status>) -> &'static str {
    match status {
        Some(Status::Met) => "\x1b[32m",
        Some(Status::OnTrack) => "\x1b[36m",
        Some(Status::AtRisk) => "\x1b[33m",
        Some(Status::Behind) => "\x1b[31;1m",
        None => "",
    }
}

/// The verdict once judged ("missed (2025-02-15)"), else the date it will be judged on.
fn verdict_text(plan: &PlanSpec, verdicts: &[Point], lang: Lang) -> String {
    let judged = verdicts
        .iter()
        .find(|v| v.series == plan.series)
        .and_then(|v| Some((v.tick, v.verdict?)));
    match (judged, lang) {
        (Some((t, f)), Lang::En) => format!("{} ({})", verdict_title(f.verdict, lang), day(t)),
        (Some((t, f)), Lang::Zh) => format!("{}（{}）", verdict_title(f.verdict, lang), day(t)),
        (None, Lang::En) if has_verdict_date(plan) => {
            format!("due {}", day(plan.verdict_tick))
        }
        (None, Lang::Zh) if has_verdict_date(plan) => {
            format!("{} 评定", day(plan.verdict_tick))
        }
        (None, _) => "–".into(),
    }
}

fn row(
    plan: &PlanSpec,
    point: Option<&Point>,
    verdicts: &[Point],
    lang: Lang,
) -> [String; COLUMNS] {
    let ind = plan.series.indicator;
    let title = plan.series.title(lang);
    let verdict = verdict_text(plan, verdicts, lang);
    match point {
        None => [
            title,
            "–".into(),
            match lang {
                Lang::En => "no data yet".into(),
                Lang::Zh => "暂无数据".into(),
            },
            "–".into(),
            shown(ind, Some(plan.target), lang),
            "–".into(),
            "–".into(),
            "–".into(),
            verdict,
        ],
        Some(p) => {
            let f = &p.fields;
            [
                title,
                tick(p.tick),
                shown(ind, Some(f.value), lang),
                shown(ind, f.expected, lang),
                shown(ind, f.target.or(Some(plan.target)), lang),
                shown_pace(f.pace_ratio, lang),
                status_title(f.status, lang).to_string(),
                shown(ind, f.projected, lang),
                verdict,
            ]
        }
    }
}

/// Renders the table in `lang`; `color` wraps each status in ANSI colour.
pub fn render(
    planned: &[(PlanSpec, Option<Point>)],
    verdicts: &[Point],
    lang: Lang,
    color: bool,
) -> String {
    let rows: Vec<([String; COLUMNS], Option<Status>)> = planned
        .iter()
        .map(|(plan, p)| {
            (
                row(plan, p.as_ref(), verdicts, lang),
                p.as_ref().and_then(|p| p.fields.status),
            )
        })
        .collect();
    // Widths in terminal columns: a Chinese character takes two.
    let mut widths = headers(lang).map(UnicodeWidthStr::width);
    for (r, _) in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.width());
        }
    }
    let line = |cells: &[String; COLUMNS], status: Option<Status>| -> String {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w - cell.width();
            // Text columns align left, numbers right.
            let text = i <= 1 || i == STATUS || i == COLUMNS - 1;
            let (left, right) = if text { (0, pad) } else { (pad, 0) };
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(&" ".repeat(left));
            if i == STATUS && color && status.is_some() {
                s.push_str(colour(status));
                s.push_str(cell);
                s.push_str("\x1b[0m");
            } else {
                s.push_str(cell);
            }
            s.push_str(&" ".repeat(right));
        }
        s.trim_end().to_string()
    };
    let mut out = line(&headers(lang).map(String::from), None);
    out.push('\n');
    for (cells, status) in &rows {
        out.push_str(&line(cells, *status));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use paceline_model::config::PlanKind;
    use paceline_model::point::{Fields, VerdictFields};
    use paceline_model::{Indicator, SeriesKey};

    fn plan(i: Indicator) -> PlanSpec {
        PlanSpec {
            series: SeriesKey::plain(i),
            kind: PlanKind::Cumulative,
            target: 10.0,
            start: 0,
            deadline: 1,
            tolerance: 0.9,
            verdict_tick: 1_715_270_400 * 1_000_000_000,
        }
    }

    fn planned() -> (Vec<(PlanSpec, Option<Point>)>, Vec<Point>) {
        let fields = Fields {
            value: 7.0,
            target: Some(10.0),
            expected: Some(8.5),
            pace_ratio: Some(0.8235294117647058),
            projected: Some(9.25),
            status: Some(Status::Behind),
        };
        let tick = 1_715_270_400 * 1_000_000_000;
        let unicorns = SeriesKey::plain(Indicator::QuasiUnicorns);
        let p = Point::indicator(unicorns, tick, fields, false);
        let v = Point::verdict(unicorns, tick, VerdictFields::judge(Some(7.0), 10.0), false);
        (
            vec![
                (plan(Indicator::QuasiUnicorns), Some(p)),
                (plan(Indicator::SrdiEnterprises), None),
            ],
            vec![v],
        )
    }

    fn cells(line: &str) -> Vec<&str> {
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect()
    }

    #[test]
    fn one_aligned_row_per_plan_item_by_title_with_status_spelled_out() {
        let (planned, verdicts) = planned();
        let plain = render(&planned, &verdicts, Lang::En, false);
        let lines: Vec<&str> = plain.lines().collect();
        assert_eq!(lines.len(), 3);
        // Hand-worked: 8.5 expected enterprises read 9 (counts are integers), a pace
        // ratio of 0.8235 reads 82.4 %.
        assert_eq!(
            cells(lines[1]),
            [
                "Quasi-unicorn enterprises",
                "2024-05-10 00:00",
                "7",
                "9",
                "10",
                "82.4 %",
                "behind",
                "9",
                "missed (2024-05-10)"
            ]
        );
        assert!(lines[2].starts_with("SRDI") && lines[2].contains("no data yet"));
        assert!(lines[2].ends_with("due 2024-05-10"));
        assert!(!plain.contains('\x1b'));
        let coloured = render(&planned, &verdicts, Lang::En, true);
        assert!(coloured.contains("\x1b[31;1mbehind\x1b[0m"));
    }

    #[test]
    fn chinese_table_aligns_by_terminal_columns() {
        let (planned, verdicts) = planned();
        let text = render(&planned, &verdicts, Lang::Zh, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(cells(lines[1])[0], "准独角兽企业");
        assert_eq!(cells(lines[1])[6], "进度滞后");
        assert_eq!(cells(lines[1])[8], "未完成（2024-05-10）");
        assert_eq!(cells(lines[2])[0], "专精特新企业");
        // Every row's value column ends at the same terminal column.
        let value_end = |l: &str| {
            let at = l.find(cells(l)[2]).unwrap() + cells(l)[2].len();
            l[..at].width()
        };
        assert_eq!(value_end(lines[0]), value_end(lines[1]));
        assert_eq!(value_end(lines[1]), value_end(lines[2]));
    }
}
