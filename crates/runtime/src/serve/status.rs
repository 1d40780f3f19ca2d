//! What the sources stand at, in one table: each partition's lag behind its log's end and
//! each stream's watermark (over this process's partitions). The watch and the coordinator
//! write it; the metrics are written from it as it changes, and the stream lag and the
//! status page's freshness are read from it, never from the metrics.

use std::collections::BTreeMap;
use std::sync::Mutex;

use paceline_model::{Nanos, Stream};

use super::metrics::ServeMetrics;

#[derive(Default)]
struct Table {
    /// Per stream, per partition: messages between where its source stands and the end of
    /// its log, as last asked.
    lag: [BTreeMap<i32, i64>; 3],
    /// Per stream: the watermark over this process's partitions.
    watermark: [Option<Nanos>; 3],
}

/// The sources' status, shared by the watch (lag), the coordinator (watermarks) and the
/// readers (the lag task, the page).
pub(crate) struct SourceStatus {
    table: Mutex<Table>,
    topics: [String; 3],
    metrics: ServeMetrics,
}

impl SourceStatus {
    pub(crate) fn new(topics: [String; 3], metrics: ServeMetrics) -> Self {
        SourceStatus {
            table: Mutex::default(),
            topics,
            metrics,
        }
    }

    /// Partition `partition` of `stream` is `lag` messages behind the end of its log.
    pub(crate) fn set_lag(&self, stream: Stream, partition: i32, lag: i64) {
        if let Ok(mut t) = self.table.lock() {
            t.lag[stream.index()].insert(partition, lag);
        }
        self.metrics
            .source_lag
            .with_label_values(&[self.topics[stream.index()].as_str(), &partition.to_string()])
            .set(lag);
    }

    /// The stream's watermark over this process's partitions moved to `watermark`.
    pub(crate) fn set_watermark(&self, stream: Stream, watermark: Nanos) {
        if let Ok(mut t) = self.table.lock() {
            t.watermark[stream.index()] = Some(watermark);
        }
        self.metrics.set_watermark(stream, watermark);
    }

    /// The stream's lag: the sum over its partitions that `counted` keeps.
    pub(crate) fn stream_lag(&self, stream: Stream, counted: impl Fn(i32) -> bool) -> i64 {
        self.table
            .lock()
            .map(|t| {
                t.lag[stream.index()]
                    .iter()
                    .filter(|(p, _)| counted(**p))
                    .map(|(_, lag)| *lag)
                    .sum()
            })
            .unwrap_or(0)
    }

    pub(crate) fn watermark(&self, stream: Stream) -> Option<Nanos> {
        self.table
            .lock()
            .ok()
            .and_then(|t| t.watermark[stream.index()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> SourceStatus {
        let topics = ["f".to_string(), "t".to_string(), "s".to_string()];
        SourceStatus::new(
            topics,
            ServeMetrics::register(&prometheus::Registry::new()).unwrap(),
        )
    }

    /// A partition's newest figure replaces its last; a stream's lag sums its partitions
    /// and no other stream's; the metrics show what the table holds.
    #[test]
    fn the_table_is_what_readers_and_metrics_see() {
        let s = status();
        s.set_lag(Stream::Filings, 0, 7);
        s.set_lag(Stream::Filings, 1, 5);
        s.set_lag(Stream::Filings, 0, 2);
        s.set_lag(Stream::Telemetry, 0, 100);
        assert_eq!(s.stream_lag(Stream::Filings, |_| true), 7);
        assert_eq!(s.stream_lag(Stream::Filings, |p| p == 1), 5);
        assert_eq!(s.stream_lag(Stream::Scenarios, |_| true), 0);
        assert_eq!(s.metrics.source_lag.with_label_values(&["f", "0"]).get(), 2);
        assert_eq!(s.watermark(Stream::Filings), None);
        s.set_watermark(Stream::Filings, 3_000_000_000);
        assert_eq!(s.watermark(Stream::Filings), Some(3_000_000_000));
        assert_eq!(
            s.metrics.watermark.with_label_values(&["filings"]).get(),
            3.0
        );
    }
}
