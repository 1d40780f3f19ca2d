//! How numbers, ticks and statuses are written for people: the one place the demo's table,
//! the replay summary and the status page take their spelling from.

use paceline_model::point::Status;
use paceline_model::time::format_plan_time;
use paceline_model::Nanos;

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
}
