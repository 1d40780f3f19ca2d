//! Reads the status page (`/`) as a test sees it: the planned-indicator rows with their
//! `data-` attributes and their charts, from the HTML a server sent or a browser dumped.

use std::collections::BTreeMap;

/// One planned indicator's row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The `<tr …>` tag with its attributes.
    pub tag: String,
    /// The row's inner HTML.
    pub body: String,
}

impl Row {
    /// An attribute's value.
    pub fn attr(&self, name: &str) -> Option<&str> {
        attr(&self.tag, name)
    }

    /// A numeric `data-` attribute (`None` when empty).
    pub fn number(&self, name: &str) -> Option<f64> {
        self.attr(name)
            .filter(|v| !v.is_empty())
            .map(|v| v.parse().unwrap_or(f64::NAN))
    }

    /// The points of the chart's value line.
    pub fn value_line(&self) -> Vec<(f64, f64)> {
        self.body
            .split("<polyline ")
            .skip(1)
            .map(|p| format!(" {}", p.split('>').next().unwrap_or_default()))
            .find(|tag| attr(tag, "class") == Some("value"))
            .and_then(|tag| attr(&tag, "points").map(str::to_string))
            .map(|pts| {
                pts.split_whitespace()
                    .filter_map(|xy| {
                        let (x, y) = xy.split_once(',')?;
                        Some((x.parse().ok()?, y.parse().ok()?))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the row carries an SVG chart.
    pub fn has_chart(&self) -> bool {
        self.body.contains("<svg")
    }
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

/// A number as a page or table shows it, read back by the rules people read it by
/// ("CNY 5.50 bn", "CNY 12.3 M", "55.00 亿元", "1230.0 万元", "6.0 %", "6.0%", "1,234"):
/// `(value, half of the last shown digit)`, so that `|value - exact| <= half` checks the
/// rounding. `None` for "–" or anything else.
pub fn shown_number(text: &str) -> Option<(f64, f64)> {
    let text = text.trim();
    let (body, scale) = if let Some(b) = text.strip_prefix("CNY ") {
        if let Some(n) = b.strip_suffix(" bn") {
            (n, 1e9)
        } else {
            (b.strip_suffix(" M")?, 1e6)
        }
    } else if let Some(n) = text.strip_suffix("亿元") {
        (n.trim_end(), 1e8)
    } else if let Some(n) = text.strip_suffix("万元") {
        (n.trim_end(), 1e4)
    } else if let Some(n) = text.strip_suffix('%') {
        (n.trim_end(), 0.01)
    } else {
        (text, 1.0)
    };
    let digits = body.replace(',', "");
    let decimals = digits.split_once('.').map_or(0, |(_, f)| f.len());
    let v: f64 = digits.parse().ok()?;
    Some((v * scale, 0.5 * 10f64.powi(-(decimals as i32)) * scale))
}

/// Whether `text` shows `exact` to its rounding (`None` shows as "–").
pub fn shows(text: &str, exact: Option<f64>) -> bool {
    match (shown_number(text), exact) {
        (None, None) => text.trim() == "–",
        (Some((v, half)), Some(e)) => (v - e).abs() <= half * (1.0 + 1e-9) + 1e-9 * e.abs(),
        _ => false,
    }
}

/// The text of a row's cell `data-field="<field>"`, tags removed.
pub fn cell_text(row: &Row, field: &str) -> Option<String> {
    let key = format!("data-field=\"{field}\"");
    let at = row.body.find(&key)?;
    let rest = &row.body[at..];
    let start = rest.find('>')? + 1;
    let end = rest.find("</td>")?;
    Some(strip_tags(&rest[start..end]))
}

/// Text without its tags, entities of the page decoded.
pub fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in html.chars() {
        match c {
            '<' => inside = true,
            '>' => inside = false,
            c if !inside => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// The planned rows of a page, by series name (`data-series`).
pub fn planned_rows(html: &str) -> BTreeMap<String, Row> {
    let mut rows = BTreeMap::new();
    for part in html.split("<tr ").skip(1) {
        let Some(end) = part.find('>') else { continue };
        let tag = format!(" {}", &part[..end]);
        if attr(&tag, "class") != Some("indicator") {
            continue;
        }
        let body = part[end + 1..]
            .split("</tr>")
            .next()
            .unwrap_or_default()
            .to_string();
        if let Some(series) = attr(&tag, "data-series") {
            rows.insert(
                series.to_string(),
                Row {
                    tag: tag.clone(),
                    body,
                },
            );
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rows_and_value_lines() {
        let html = r#"<table><tr><th>x</th></tr><tr class="indicator" data-series="a{b=c}" data-value="1.5" data-expected=""><td><svg><polyline class="pace" points="0,1 2,3"/><polyline class="value" points="0.0,9.5 10.0,4.0"/></svg></td></tr></table>"#;
        let rows = planned_rows(html);
        let row = &rows["a{b=c}"];
        assert_eq!(row.number("data-value"), Some(1.5));
        assert_eq!(row.number("data-expected"), None);
        assert!(row.has_chart());
        assert_eq!(row.value_line(), vec![(0.0, 9.5), (10.0, 4.0)]);
    }

    #[test]
    fn reads_numbers_as_people_read_them() {
        let near = |text: &str, v: f64, half: f64| {
            let (a, b) = shown_number(text).unwrap();
            (a - v).abs() < 1e-6 && (b - half).abs() < 1e-6 * half
        };
        assert!(near("CNY 5.50 bn", 5.5e9, 5e6));
        assert!(near("55.00 亿元", 5.5e9, 5e5));
        assert!(near("1,234", 1234.0, 0.5));
        assert!(shows("CNY 12.3 M", Some(12_345_678.0)));
        assert!(!shows("CNY 12.3 M", Some(12_400_000.0)));
        assert!(shows("1230.0 万元", Some(12_300_000.0)));
        assert!(shows("6.0 %", Some(0.0596)));
        assert!(shows("6.0%", Some(0.0596)));
        assert!(!shows("6.0 %", Some(0.0606)));
        assert!(shows("–", None));
        assert!(!shows("7", None));
    }
}
