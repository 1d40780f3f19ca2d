//! The sink stage: indicator points out, as InfluxDB line protocol.
//!
//! Place in the flow: ingest → decode → dataflow → **sinks**. [`format_point`] writes one
//! point as a line (docs/outputs.md, "Points"); [`LineProtocolFile`] is replay's
//! output file; [`influx`] writes the same lines to InfluxDB (v2 or 1.x API) and [`batcher`]
//! batches, retries and bounds what is pending.

use std::fmt::Write as _;
use std::io::{BufWriter, Write};

use paceline_model::point::{Fields, Point, VerdictFields};

pub mod batcher;
pub mod config;
pub mod influx;
pub mod metrics;
pub mod number;
pub mod read;

/// The measurements points are written to: the indicators' and the plan verdicts'
/// (`indicators.measurement`, `indicators.verdict_measurement`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurements {
    /// Indicator points.
    pub points: String,
    /// Plan verdict points.
    pub verdicts: String,
}

impl Measurements {
    /// The measurements the configuration names.
    pub fn from_config(c: &paceline_model::config::IndicatorsConfig) -> Measurements {
        Measurements {
            points: c.measurement.clone(),
            verdicts: c.verdict_measurement.clone(),
        }
    }
}

/// Appends one point as a line-protocol line (with its newline) to `out`, its timestamp in
/// nanoseconds.
pub fn format_point(measurements: &Measurements, p: &Point, out: &mut String) {
    format_point_in(measurements, p, 1, out)
}

/// Like [`format_point`], with the timestamp in units of `divisor` nanoseconds (ticks are
/// whole seconds, so every precision down to seconds is exact).
pub fn format_point_in(measurements: &Measurements, p: &Point, divisor: i64, out: &mut String) {
    match &p.verdict {
        Some(_) => out.push_str(&measurements.verdicts),
        None => out.push_str(&measurements.points),
    }
    out.push_str(",indicator=");
    out.push_str(p.series.indicator.name());
    if let Some((k, v)) = p.series.tag_pair() {
        out.push(',');
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    match &p.verdict {
        Some(v) => format_verdict_fields(v, out),
        None => format_fields(&p.fields, out),
    }
    out.push(' ');
    number::push_i64(out, p.tick / divisor.max(1));
    out.push('\n');
}

fn format_fields(f: &Fields, out: &mut String) {
    out.push_str(" value=");
    number::push_f64(out, f.value);
    for (name, v) in [
        ("target", f.target),
        ("expected", f.expected),
        ("pace_ratio", f.pace_ratio),
        ("projected", f.projected),
    ] {
        if let Some(v) = v {
            out.push(',');
            out.push_str(name);
            out.push('=');
            number::push_f64(out, v);
        }
    }
    if let Some(s) = f.status {
        let _ = write!(out, ",status=\"{}\"", s.as_str());
    }
}

/// `target` and `verdict` always; `value` where the series had one at the verdict tick.
fn format_verdict_fields(v: &VerdictFields, out: &mut String) {
    out.push_str(" target=");
    number::push_f64(out, v.target);
    if let Some(value) = v.value {
        out.push_str(",value=");
        number::push_f64(out, value);
    }
    let _ = write!(out, ",verdict=\"{}\"", v.verdict.as_str());
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
    measurements: Measurements,
    out: BufWriter<std::fs::File>,
    buf: String,
    /// Points written so far.
    pub points: u64,
    /// A regular file, which is synced (a device or a pipe cannot be).
    regular: bool,
    /// Bytes written since the file was last synced.
    unsynced: usize,
}

/// How much is written between two syncs of the file while points still come. Syncing
/// as it goes keeps the disk busy while the pipeline computes: the one sync at the end
/// made the run wait for the whole file's write-back (about 12 ms of a 0.2 s replay
/// writing 22 MB here) with every other thread done.
const SYNC_EVERY_BYTES: usize = 4 << 20;

/// Whether `file` can be synced: a regular file can; a device or a pipe (`/dev/null`,
/// `/dev/stdout`) has nothing to sync and `fsync` refuses it (EINVAL), though what is
/// written to it is written all the same.
pub fn syncable(file: &std::fs::File) -> bool {
    file.metadata().is_ok_and(|m| m.is_file())
}

impl LineProtocolFile {
    /// Creates (truncates) the file.
    pub fn create(path: &str, measurements: &Measurements) -> Result<Self, SinkError> {
        let file = std::fs::File::create(path).map_err(|source| SinkError {
            path: path.into(),
            source,
        })?;
        let regular = syncable(&file);
        Ok(LineProtocolFile {
            path: path.into(),
            measurements: measurements.clone(),
            out: BufWriter::with_capacity(1 << 20, file),
            buf: String::new(),
            points: 0,
            regular,
            unsynced: 0,
        })
    }

    /// Appends points; syncs what the file holds every [`SYNC_EVERY_BYTES`].
    pub fn write(&mut self, points: &[Point]) -> Result<(), SinkError> {
        self.buf.clear();
        for p in points {
            format_point(&self.measurements, p, &mut self.buf);
        }
        self.points += points.len() as u64;
        self.out
            .write_all(self.buf.as_bytes())
            .map_err(|source| self.error(source))?;
        self.unsynced += self.buf.len();
        if self.regular && self.unsynced >= SYNC_EVERY_BYTES {
            self.sync(false)?;
        }
        Ok(())
    }

    /// Flushes, and syncs the file if it is a regular one.
    pub fn finish(mut self) -> Result<u64, SinkError> {
        if self.regular {
            self.sync(true)?;
        } else {
            self.out.flush().map_err(|source| self.error(source))?;
        }
        Ok(self.points)
    }

    /// Flushes and syncs the file's data (`all`: its metadata too).
    fn sync(&mut self, all: bool) -> Result<(), SinkError> {
        self.out.flush().map_err(|source| self.error(source))?;
        let file = self.out.get_ref();
        let synced = if all {
            file.sync_all()
        } else {
            file.sync_data()
        };
        synced.map_err(|source| self.error(source))?;
        self.unsynced = 0;
        Ok(())
    }

    fn error(&self, source: std::io::Error) -> SinkError {
        SinkError {
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paceline_model::point::{Fields, Status};
    use paceline_model::{Indicator, SeriesKey};

    /// A device takes the points without the sync a regular file gets (`fsync` of
    /// `/dev/null` fails with EINVAL); a regular file gets all of them, synced as they
    /// come and at the end.
    #[test]
    fn finishes_on_a_device_and_on_a_file() {
        let m = Measurements {
            points: "indicator".into(),
            verdicts: "plan_verdict".into(),
        };
        let p = Point {
            series: SeriesKey::tagged(Indicator::ClusterRevenueCny, 0),
            tick: 1_640_966_400_000_000_000,
            fields: Fields {
                value: 1.0,
                target: None,
                expected: None,
                pace_ratio: None,
                projected: None,
                status: None,
            },
            correction: false,
            verdict: None,
        };
        assert!(std::fs::File::open("/dev/null")
            .and_then(|f| f.sync_all())
            .is_err());
        let mut null = LineProtocolFile::create("/dev/null", &m).expect("opens /dev/null");
        null.write(&[p.clone(), p.clone()]).expect("writes");
        assert_eq!(null.finish().expect("finishes on a device"), 2);

        let path = std::env::temp_dir().join(format!("paceline-sink-{}.lp", std::process::id()));
        let path = path.to_str().expect("a UTF-8 path");
        let mut file = LineProtocolFile::create(path, &m).expect("creates");
        // Batches past the size synced as it goes: the file is synced on the way and at the
        // end, the device (above) never.
        let batch = vec![p; 10_000];
        let batches = SYNC_EVERY_BYTES / (batch.len() * 60) + 2;
        for _ in 0..batches {
            file.write(&batch).expect("writes");
        }
        let total = batches * batch.len();
        assert_eq!(file.finish().expect("finishes on a file"), total as u64);
        let written = std::fs::read_to_string(path).expect("reads back");
        std::fs::remove_file(path).expect("removes");
        assert!(written.len() > SYNC_EVERY_BYTES, "{} bytes", written.len());
        assert_eq!(written.lines().count(), total);
        assert!(written.starts_with("indicator,indicator=cluster_revenue_cny"));
    }

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
            verdict: None,
        };
        let m = Measurements {
            points: "indicator".into(),
            verdicts: "plan_verdict".into(),
        };
        format_point(&m, &p, &mut s);
        assert_eq!(
            s,
            "indicator,indicator=cluster_revenue_cny,cluster=cybersecurity value=1500000000,target=10000000000,expected=2.5,projected=-0.25,status=\"at_risk\" 1640966400000000000\n"
        );
        s.clear();
        let q = Point::indicator(
            SeriesKey::plain(Indicator::ScenariosIdle),
            7,
            Fields::value(0.0),
            true,
        );
        format_point(&m, &q, &mut s);
        assert_eq!(s, "indicator,indicator=scenarios_idle value=0 7\n");
        // A plan verdict: its own measurement, the indicator's tags, value where it has one.
        s.clear();
        let series = SeriesKey::tagged(Indicator::ClusterRevenueCny, 1);
        let met = VerdictFields {
            value: Some(1.25e10),
            target: 1e10,
            verdict: paceline_model::point::Verdict::Met,
        };
        format_point(&m, &Point::verdict(series, 9, met, false), &mut s);
        let none = VerdictFields::judge(None, 0.08);
        let growth = SeriesKey::plain(Indicator::DigitalEconomyAddedValueGrowth);
        format_point(&m, &Point::verdict(growth, 10, none, true), &mut s);
        assert_eq!(
            s,
            "plan_verdict,indicator=cluster_revenue_cny,cluster=urban_technology target=10000000000,value=12500000000,verdict=\"met\" 9\n\
             plan_verdict,indicator=digital_economy_added_value_growth target=0.08,verdict=\"missed\" 10\n"
        );
    }
}
