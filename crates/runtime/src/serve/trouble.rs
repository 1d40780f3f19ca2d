//! Trouble with a service paceline depends on (Kafka, InfluxDB): since when and why, as
//! `/readyz` reads it, and said in the log when it begins, every [`SAY_AGAIN`] while it
//! lasts, and when it ends, so that a newcomer sees what the service waits for.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often lasting trouble is said again in the log.
pub const SAY_AGAIN: Duration = Duration::from_secs(30);

/// One dependency's trouble, if any.
#[derive(Debug)]
pub struct Trouble {
    /// What depends on it, as `/readyz` and the log name it: `Kafka`, `InfluxDB`.
    subject: &'static str,
    /// The setting that bounds how long the service waits, and its value.
    bound: (&'static str, Duration),
    state: Mutex<Option<Lasting>>,
}

#[derive(Debug)]
struct Lasting {
    since: Instant,
    reason: String,
    said: Instant,
}

impl Trouble {
    /// No trouble yet with `subject`; the service waits at most `bound` (its setting's key
    /// and value) before it stops.
    pub fn new(subject: &'static str, bound: (&'static str, Duration)) -> Trouble {
        Trouble {
            subject,
            bound,
            state: Mutex::new(None),
        }
    }

    /// Records a look: `None` when all was well. Trouble keeps the time it began.
    pub fn record(&self, trouble: Option<String>) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let now = Instant::now();
        *state = match (state.take(), trouble) {
            (None, None) => None,
            (Some(was), None) => {
                tracing::info!(
                    subject = self.subject,
                    after_s = was.since.elapsed().as_secs(),
                    "{} reached again",
                    self.subject
                );
                None
            }
            (None, Some(reason)) => {
                self.say(&reason, Duration::ZERO);
                Some(Lasting {
                    since: now,
                    reason,
                    said: now,
                })
            }
            (Some(was), Some(reason)) => {
                let said = if now.duration_since(was.said) >= SAY_AGAIN {
                    self.say(&reason, now.duration_since(was.since));
                    now
                } else {
                    was.said
                };
                Some(Lasting {
                    since: was.since,
                    reason,
                    said,
                })
            }
        };
    }

    fn say(&self, reason: &str, lasted: Duration) {
        let (key, bound) = self.bound;
        tracing::warn!(
            subject = self.subject,
            for_s = lasted.as_secs(),
            "{} unavailable: {reason}; waiting, and stopping if it lasts {} s ({key})",
            self.subject,
            bound.as_secs()
        );
    }

    /// The trouble and how long it has lasted, if any.
    pub fn trouble(&self) -> Option<(Duration, String)> {
        let state = self.state.lock().ok()?;
        state
            .as_ref()
            .map(|t| (t.since.elapsed(), t.reason.clone()))
    }

    /// What `/readyz` says of it: `Kafka: <why> (for N s)`.
    pub fn readiness(&self) -> Option<String> {
        self.trouble()
            .map(|(lasted, why)| format!("{}: {why} (for {} s)", self.subject, lasted.as_secs()))
    }

    /// The reason to stop, once the trouble has lasted its bound.
    pub fn past_bound(&self) -> Option<String> {
        let (key, bound) = self.bound;
        let (lasted, why) = self.trouble()?;
        (lasted >= bound).then(|| format!("unavailable for {} s ({key}): {why}", lasted.as_secs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trouble_keeps_its_start_until_a_good_look() {
        let h = Trouble::new(
            "Kafka",
            ("kafka.unavailable_timeout_s", Duration::from_millis(20)),
        );
        assert!(h.trouble().is_none());
        assert!(h.past_bound().is_none());
        h.record(Some("brokers down".into()));
        assert_eq!(h.past_bound(), None);
        std::thread::sleep(Duration::from_millis(30));
        h.record(Some("still down".into()));
        let (lasted, why) = h.trouble().expect("in trouble");
        assert!(lasted >= Duration::from_millis(30), "{lasted:?}");
        assert_eq!(why, "still down");
        let stop = h.past_bound().expect("past its bound");
        assert!(
            stop.starts_with("unavailable for 0 s (kafka.unavailable_timeout_s): still down"),
            "{stop}"
        );
        assert!(h
            .readiness()
            .unwrap()
            .starts_with("Kafka: still down (for "));
        h.record(None);
        assert!(h.trouble().is_none());
        h.record(Some("again".into()));
        assert!(h.trouble().expect("again").0 < Duration::from_millis(30));
    }
}
