//! Progress of a long run on a terminal: events read, the event time reached and the rate.
//! Drawn on standard error only when it is a terminal; otherwise nothing is drawn, so logs
//! and pipes stay clean.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use paceline_model::Nanos;

use crate::present::{day, number};

/// A progress bar over bytes read (the total known up front) or a spinner.
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
}

impl Progress {
    /// A bar over `total` bytes, drawn when standard error is a terminal.
    pub fn for_terminal(total: Option<u64>) -> Progress {
        if std::io::stderr().is_terminal() {
            Progress::new(total, ProgressDrawTarget::stderr_with_hz(4))
        } else {
            Progress::hidden()
        }
    }

    /// Draws nothing.
    pub fn hidden() -> Progress {
        Progress::new(None, ProgressDrawTarget::hidden())
    }

    fn new(total: Option<u64>, target: ProgressDrawTarget) -> Progress {
        let bar = match total {
            Some(n) => ProgressBar::with_draw_target(Some(n), target),
            None => ProgressBar::with_draw_target(None, target),
        };
        let template = if total.is_some() {
            "{spinner} {elapsed:>4} [{bar:30}] {percent:>3}% {wide_msg}"
        } else {
            "{spinner} {elapsed:>4} {wide_msg}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(250));
        Progress {
            bar,
            started: Instant::now(),
        }
    }

    /// Reports `bytes` read so far, `events` read and the greatest event time accepted.
    pub fn update(&self, bytes: u64, events: u64, reached: Option<Nanos>) {
        if self.bar.is_hidden() {
            return;
        }
        self.bar.set_position(bytes);
        let rate = events as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let reached = reached.map_or_else(|| "–".to_string(), day);
        self.bar.set_message(format!(
            "{} events · event time {reached} · {} events/s",
            number(events as f64),
            number(rate.round())
        ));
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
