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
}
