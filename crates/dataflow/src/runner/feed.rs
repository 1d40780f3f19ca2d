//! What the feeding side sends each worker, and the channel it goes through.

use std::sync::{Arc, OnceLock};

use crossbeam_channel::Sender;
use paceline_model::Event;

use super::marks::WatermarkReport;
use super::RunnerError;

/// One worker's input for one epoch.
#[derive(Debug, Default)]
pub struct Epoch {
    /// Accepted events.
    pub events: Vec<Event>,
    /// Watermark reports.
    pub reports: Vec<WatermarkReport>,
    /// The epoch the worker's input moves to once this is given (at its current one);
    /// None: the next. Processes of a cluster number epochs by the clock, so that they
    /// advance together, and may give several inputs in one epoch.
    pub advance_to: Option<u64>,
}

/// What a worker is sent: the next epoch's input, or a request for its state.
#[derive(Debug)]
pub enum Feed {
    /// Input of one epoch.
    Epoch(Epoch),
    /// Once every epoch sent before has been processed by every worker, serialize this
    /// worker's state and send it back. No worker is sent input meanwhile, so the parts
    /// all describe the same point of the input (an aligned snapshot).
    Snapshot(Sender<Result<Vec<u8>, RunnerError>>),
}

/// One worker's feed: the channel, and the worker's thread to wake once something is in
/// it (a worker with nothing to do parks instead of polling).
pub(super) struct Inbox {
    pub(super) tx: Sender<Feed>,
    pub(super) thread: Arc<OnceLock<std::thread::Thread>>,
}

impl Inbox {
    pub(super) fn send(&self, feed: Feed) -> Result<(), ()> {
        self.tx.send(feed).map_err(|_| ())?;
        // A worker that found its channel empty and parked wakes now; one that has not
        // parked yet keeps the token and returns from its next park at once.
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
        Ok(())
    }
}
