//! The sink stage: indicator points out, as InfluxDB line protocol.
//!
//! Place in the flow: ingest → decode → dataflow → **sinks**. [`format_point`] writes one
//! point as a line (docs/outputs.md, "Points"); [`LineProtocolFile`] is replay's
//! output file; [`influx`] writes the same lines to InfluxDB (v2 or 1.x API) and [`batcher`]
//! batches, retries and bounds what is pending.

use std::fmt::Write as _;
use std::io::{BufWriter, Write};

use paceline_model::point::Point;

pub mod batcher;
pub mod config;
pub mod influx;
pub mod metrics;

/// Appends one point as a line-protocol line (with its newline) to `out`, its timestamp in
/// nanoseconds.
pub fn format_point(measurement: &str, p: &Point, out: &mut String) {
    format_point_in(measurement, p, 1, out)
}

/// Like [`format_point`], with the timestamp in units of `divisor` nanoseconds (ticks are
/// whole seconds, so every precision down to seconds is exact).
pub fn format_point_in(measurement: &str, p: &Point, divisor: i64, out: &mut String) {
    out.push_str(measurement);
    out.push_str(",indicator=");
    out.push_str(p.series.indicator.name());
    if let Some((k, v)) = p.series.tag_pair() {
        out.push(',');
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    let f = &p.fields;
    let _ = write!(out, " value={}", f.value);
    for (name, v) in [
        ("target", f.target),
        ("expected", f.expected),
        ("pace_ratio", f.pace_ratio),
        ("projected", f.projected),
    ] {
        if let Some(v) = v {
            let _ = write!(out, ",{name}={v}");
        }
    }
    if let Some(s) = f.status {
        let _ = write!(out, ",status=\"{}\"", s.as_str());
    }
    let _ = writeln!(out, " {}", p.tick / divisor.max(1));
}

/// Writing the output file failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct SinkError {
    /// The file.
    pub path: String,
    /// Why.
    pub source: std::io::Error,
}

/// Replay's output: a line-protocol file, written in the order points arrive (so the last
/// line of a series and timestamp is the one in force).
pub struct LineProtocolFile {
    path: String,
    measurement: String,
    out: BufWriter<std::fs::File>,
    buf: String,
    /// Points written so far.
    pub points: u64,
}

impl LineProtocolFile {
    /// Creates (truncates) the file.
    pub fn create(path: &str, measurement: &str) -> Result<Self, SinkError> {
        let file = std::fs::File::create(path).map_err(|source| SinkError {
            path: path.into(),
            source,
        })?;
        Ok(LineProtocolFile {
            path: path.into(),
            measurement: measurement.into(),
            out: BufWriter::with_capacity(1 << 20, file),
            buf: String::new(),
            points: 0,
        })
    }

    /// Appends points.
    pub fn write(&mut self, points: &[Point]) -> Result<(), SinkError> {
        self.buf.clear();
        for p in points {
            format_point(&self.measurement, p, &mut self.buf);
        }
        self.points += points.len() as u64;
        self.out
            .write_all(self.buf.as_bytes())
            .map_err(|source| SinkError {
                path: self.path.clone(),
                source,
            })
    }

    /// Flushes and syncs the file.
    pub fn finish(mut self) -> Result<u64, SinkError> {
        let path = self.path.clone();
        self.out.flush().map_err(|source| SinkError {
            path: path.clone(),
            source,
        })?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(|source| SinkError { path, source })?;
        Ok(self.points)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paceline_model::point::{Fields, Status};
    use paceline_model::{Indicator, SeriesKey};

    #[test]
    fn formats_the_spec_shape() {
        let mut s = String::new();
        let p = Point {
            series: SeriesKey::tagged(Indicator::ClusterRevenueCny, 0),
            tick: 1_640_966_400_000_000_000,
            fields: Fields {
                value: 1.5e9,
                target: Some(1e10),
                expected: Some(2.5),
                pace_ratio: None,
                projected: Some(-0.25),
                status: Some(Status::AtRisk),
            },
            correction: false,
        };
        format_point("indicator", &p, &mut s);
        assert_eq!(
            s,
            "indicator,indicator=cluster_revenue_cny,cluster=cybersecurity value=1500000000,target=10000000000,expected=2.5,projected=-0.25,status=\"at_risk\" 1640966400000000000\n"
        );
        s.clear();
        let q = Point {
            series: SeriesKey::plain(Indicator::ScenariosIdle),
            tick: 7,
            fields: Fields::value(0.0),
            correction: true,
        };
        format_point("m", &q, &mut s);
        assert_eq!(s, "m,indicator=scenarios_idle value=0 7\n");
    }
}
