//! Admission of decoded events: the one path replay and serve both take. A line that did
//! not decode goes to the dead letters; a valid event passes the event-time rule
//! (duplicate? older than the correction horizon?); an accepted event goes on to the
//! dataflow; every outcome is counted. Replay and serve differ only in their
//! [`AdmissionSink`]: where rejected lines go and what counts them.

use paceline_decode::{Admission, Rejection, Verdict};
use paceline_model::{Event, Stream};

/// Where admission's outcomes go: the counts, and each rejected line with its origin
/// (replay: the dead-letter file and the summary; serve: the dead-letter topic and the
/// metrics).
pub(crate) trait AdmissionSink {
    /// Where a line came from (replay: its line number; serve: partition and offset).
    type Origin;
    /// Why a rejected line could not be kept.
    type Error;

    /// An event entered the dataflow.
    fn accepted(&mut self, stream: Stream);

    /// An event with the id of an accepted one: counted, nothing else.
    fn duplicate(&mut self, stream: Stream);

    /// A line rejected, by the decoder or by the event-time rule: kept with its reason.
    fn rejected(
        &mut self,
        rejection: &Rejection,
        origin: &Self::Origin,
        raw: &[u8],
    ) -> Result<(), Self::Error>;
}

/// Admits one line's decoding: the event when it is accepted, None otherwise; `sink` is
/// told the outcome either way.
pub(crate) fn admit<S: AdmissionSink>(
    admission: &mut Admission,
    decoded: Result<Event, Rejection>,
    origin: &S::Origin,
    raw: &[u8],
    sink: &mut S,
) -> Result<Option<Event>, S::Error> {
    let event = match decoded {
        Ok(event) => event,
        Err(rejection) => {
            sink.rejected(&rejection, origin, raw)?;
            return Ok(None);
        }
    };
    let stream = event.body.stream();
    match admission.admit(&event) {
        Verdict::Accepted => {
            sink.accepted(stream);
            Ok(Some(event))
        }
        Verdict::Duplicate => {
            sink.duplicate(stream);
            Ok(None)
        }
        Verdict::TooLate => {
            sink.rejected(&Rejection::too_late(stream), origin, raw)?;
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paceline_model::config::Config;

    /// Counts and keeps what it is told, as a sink would.
    #[derive(Default)]
    struct Told {
        accepted: usize,
        duplicates: usize,
        rejected: Vec<(String, usize)>,
    }

    impl AdmissionSink for Told {
        type Origin = usize;
        type Error = ();
        fn accepted(&mut self, _: Stream) {
            self.accepted += 1;
        }
        fn duplicate(&mut self, _: Stream) {
            self.duplicates += 1;
        }
        fn rejected(&mut self, r: &Rejection, line: &usize, _: &[u8]) -> Result<(), ()> {
            self.rejected.push((r.reason.as_str().to_string(), *line));
            Ok(())
        }
    }

    fn filing(id: &str, at: &str) -> Vec<u8> {
        format!(
            r#"{{"event_id":"{id}","type":"enterprise.registered","occurred_at":"{at}","source":"registry","enterprise_id":"E1001","name":"Canal Secure Tech","cluster":"cybersecurity","region":"canal_business_district","sme":true}}"#
        )
        .into_bytes()
    }

    /// Worked by hand: an accepted filing, its duplicate, a line that does not decode and a
    /// filing older than the watermark minus the filings' horizon, each told once, with
    /// its line.
    #[test]
    fn each_outcome_is_told_once_with_its_origin() {
        let config = Config::default();
        let mut admission = Admission::new(&config.streams);
        let mut told = Told::default();
        let lines = [
            filing("a", "2024-06-01T00:00:00Z"),
            filing("a", "2024-06-01T00:00:00Z"),
            b"{not json".to_vec(),
            filing("b", "2021-01-01T00:00:00Z"),
        ];
        let mut kept = Vec::new();
        for (n, raw) in lines.iter().enumerate() {
            let decoded = paceline_decode::decode(raw, None);
            if let Some(e) = admit(&mut admission, decoded, &n, raw, &mut told).unwrap() {
                kept.push(e.id.clone());
            }
        }
        assert_eq!(kept, vec!["a".to_string()]);
        assert_eq!((told.accepted, told.duplicates), (1, 1));
        assert_eq!(told.rejected.len(), 2, "{:?}", told.rejected);
        assert_eq!(told.rejected[0].1, 2);
        assert_eq!(told.rejected[1], ("too_late".to_string(), 3));
    }
}
