//! The planned indicators as a terminal table: printed by `paceline demo` and at the end
//! of a replay's summary. Status is coloured only when asked (a terminal), and always
//! spelled out, so the table means the same in a log file or on a monochrome screen.

use paceline_model::config::PlanSpec;
use paceline_model::point::{Point, Status};

use crate::present::{maybe, number, status_label, tick};

const HEADERS: [&str; 8] = [
    "indicator",
    "tick (+08:00)",
    "value",
    "expected",
    "target",
    "pace ratio",
    "status",
    "projected",
];

fn colour(status: Option<Status>) -> &'static str {
    match status {
        Some(Status::Met) => "\x1b[32m",
        Some(Status::OnTrack) => "\x1b[36m",
        Some(Status::AtRisk) => "\x1b[33m",
        Some(Status::Behind) => "\x1b[31;1m",
        None => "",
    }
}

fn row(plan: &PlanSpec, point: Option<&Point>) -> [String; 8] {
    let series = plan.series.display();
    match point {
        None => [
            series,
            "–".into(),
            "no data yet".into(),
            "–".into(),
            number(plan.target),
            "–".into(),
            "–".into(),
            "–".into(),
        ],
        Some(p) => {
            let f = &p.fields;
            [
                series,
                tick(p.tick),
                number(f.value),
                maybe(f.expected),
                maybe(f.target.or(Some(plan.target))),
                maybe(f.pace_ratio),
                status_label(f.status).to_string(),
                maybe(f.projected),
            ]
        }
    }
}

/// Renders the table; `color` wraps each status in ANSI colour.
pub fn render(planned: &[(PlanSpec, Option<Point>)], color: bool) -> String {
    let rows: Vec<([String; 8], Option<Status>)> = planned
        .iter()
        .map(|(plan, p)| {
            (
                row(plan, p.as_ref()),
                p.as_ref().and_then(|p| p.fields.status),
            )
        })
        .collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for (r, _) in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 8], status: Option<Status>| -> String {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w - cell.chars().count();
            // Text columns align left, numbers right.
            let (left, right) = if i <= 1 || i == 6 { (0, pad) } else { (pad, 0) };
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(&" ".repeat(left));
            if i == 6 && color && status.is_some() {
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
    let mut out = line(&HEADERS.map(String::from), None);
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
    use paceline_model::point::Fields;
    use paceline_model::{Indicator, SeriesKey};

    #[test]
    fn one_aligned_row_per_plan_item_with_status_spelled_out() {
        let plan = |i| PlanSpec {
            series: SeriesKey::plain(i),
            kind: PlanKind::Cumulative,
            target: 10.0,
            start: 0,
            deadline: 1,
            tolerance: 0.9,
            verdict_tick: i64::MAX,
        };
        let fields = Fields {
            value: 7.0,
            target: Some(10.0),
            expected: Some(8.5),
            pace_ratio: Some(0.8235294117647058),
            projected: Some(9.25),
            status: Some(Status::Behind),
        };
        let p = Point::indicator(
            SeriesKey::plain(Indicator::QuasiUnicorns),
            1_715_270_400 * 1_000_000_000,
            fields,
            false,
        );
        let planned = vec![
            (plan(Indicator::QuasiUnicorns), Some(p)),
            (plan(Indicator::SrdiEnterprises), None),
        ];
        let plain = render(&planned, false);
        let lines: Vec<&str> = plain.lines().collect();
        assert_eq!(lines.len(), 3);
        let cells: Vec<&str> = lines[1].split("  ").filter(|c| !c.is_empty()).collect();
        assert_eq!(
            cells.iter().map(|c| c.trim()).collect::<Vec<_>>(),
            [
                "quasi_unicorns",
                "2024-05-10 00:00",
                "7",
                "8.5000",
                "10",
                "0.8235",
                "behind",
                "9.2500"
            ]
        );
        assert!(lines[2].starts_with("srdi_enterprises") && lines[2].contains("no data yet"));
        assert!(!plain.contains('\x1b'));
        let coloured = render(&planned, true);
        assert!(coloured.contains("\x1b[31;1mbehind\x1b[0m"));
    }
}
