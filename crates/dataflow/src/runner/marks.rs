//! The streams' watermarks as the operators follow them: every source's reports folded
//! into one watermark per stream, by one rule both operators apply.

use std::collections::HashMap;

use paceline_model::{Nanos, Stream};
use serde::{Deserialize, Serialize};

/// Progress of one stream as seen by one source.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WatermarkReport {
    /// The reporting source (a worker index).
    pub source: u32,
    /// The stream.
    pub stream: Stream,
    /// Ticks up to here may close.
    pub watermark: Option<Nanos>,
    /// The earliest accepted `occurred_at` of the stream: ticks begin after it.
    pub earliest: Option<Nanos>,
    /// End of input: close every tick up to the first tick after this instant (the greatest
    /// accepted `occurred_at` of any stream).
    pub end_of_input: Option<Nanos>,
    /// Every partition of the stream this source reads is idle (see [`Marks`]).
    pub idle: bool,
}

/// The streams' watermarks from every source's reports: one watermark per stream over
/// every source, by the rule one process applies to its partitions. The least over the
/// sources with active partitions (a source that reported the stream without a watermark
/// yet holds it back, so that a process whose partitions have not been read yet does not
/// let the others close ticks its events belong to); when every source is idle, the
/// greatest. Never moves back. Both operators follow this one rule.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Marks {
    /// Per (source, stream): its latest watermark, and whether all its partitions are idle.
    latest: HashMap<(u32, Stream), (Option<Nanos>, bool)>,
    global: [Option<Nanos>; 3],
}

impl Marks {
    /// Takes one epoch's reports. The watermarks are settled once all are in: a source's
    /// first report (a hold) must count before another's watermark can move the stream.
    pub(super) fn record_all<'r>(
        &mut self,
        reports: impl IntoIterator<Item = &'r WatermarkReport>,
    ) {
        let mut streams = [false; 3];
        for r in reports {
            let e = self
                .latest
                .entry((r.source, r.stream))
                .or_insert((None, r.idle));
            e.1 = r.idle;
            if let Some(w) = r.watermark {
                e.0 = Some(e.0.map_or(w, |x| x.max(w)));
            }
            streams[r.stream.index()] = true;
        }
        for s in Stream::ALL.into_iter().filter(|s| streams[s.index()]) {
            self.settle(s);
        }
    }

    fn settle(&mut self, stream: Stream) {
        let of_stream = || {
            self.latest
                .iter()
                .filter(|((_, s), _)| *s == stream)
                .map(|(_, v)| *v)
        };
        let active: Vec<Option<Nanos>> = of_stream()
            .filter(|(_, idle)| !idle)
            .map(|(w, _)| w)
            .collect();
        let now = if active.is_empty() {
            of_stream().filter_map(|(w, _)| w).max()
        } else {
            active
                .iter()
                .copied()
                .collect::<Option<Vec<Nanos>>>()
                .and_then(|ws| ws.into_iter().min())
        };
        if let Some(now) = now {
            let g = &mut self.global[stream.index()];
            *g = Some(g.map_or(now, |x| x.max(now)));
        }
    }

    /// The stream's watermark over every source.
    pub(super) fn of(&self, stream: Stream) -> Option<Nanos> {
        self.global[stream.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(source: u32, watermark: Option<Nanos>, idle: bool) -> WatermarkReport {
        WatermarkReport {
            source,
            stream: Stream::Filings,
            watermark,
            earliest: None,
            end_of_input: None,
            idle,
        }
    }

    /// One watermark per stream over the sources, worked by hand: a source without a
    /// watermark holds the stream back even when it reports after another in the same
    /// epoch; the least over active sources, the greatest once all are idle; never back.
    #[test]
    fn one_watermark_over_every_source() {
        let mut m = Marks::default();
        let of = |m: &Marks| m.of(Stream::Filings);
        m.record_all(&[report(0, Some(10), false), report(1, None, false)]);
        assert_eq!(of(&m), None, "process 1 has not read yet");
        m.record_all(&[report(1, Some(5), false)]);
        assert_eq!(of(&m), Some(5));
        m.record_all(&[report(0, Some(12), false), report(1, Some(7), false)]);
        assert_eq!(of(&m), Some(7));
        m.record_all(&[report(1, Some(9), true)]);
        assert_eq!(of(&m), Some(12), "an idle process holds nothing back");
        m.record_all(&[report(0, Some(14), true)]);
        assert_eq!(of(&m), Some(14), "all idle: the greatest");
        m.record_all(&[report(1, Some(11), false)]);
        assert_eq!(of(&m), Some(14), "never moves back");
        m.record_all(&[report(1, Some(20), false)]);
        assert_eq!(of(&m), Some(20));
        assert_eq!(m.of(Stream::Telemetry), None, "streams are apart");
        let mut alone = Marks::default();
        alone.record_all(&[report(0, Some(3), false)]);
        assert_eq!(alone.of(Stream::Filings), Some(3), "one source: its own");
    }
}
