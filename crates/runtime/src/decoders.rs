//! Decoding lines on several threads while their results come back in input order.
//!
//! Replay reads lines in chunks and hands each chunk to a pool of decoder threads;
//! [`Decoders::next`] returns the decoded chunks strictly in the order they were
//! submitted, so admission (duplicates, `too_late`) and the dead-letter file still follow
//! the input sequence exactly. Decoding is most of the per-event work before the dataflow,
//! so one reader thread doing it all held every worker count to one core's pace.

use std::collections::BTreeMap;

use crossbeam_channel::{bounded, Receiver, Sender};
use paceline_decode::{decode_at, latest_occurred_at, Rejection};
use paceline_model::{Event, Nanos};

/// Lines per chunk: large enough that the hand-over costs little per line, small enough
/// that every decoder has work at the end of a short input.
pub const CHUNK_LINES: usize = 1024;
/// Chunks submitted but not yet taken back, per decoder thread: bounds memory (a chunk
/// holds at most [`CHUNK_LINES`] lines of at most the event limit).
const IN_FLIGHT_PER_DECODER: usize = 4;

/// Lines to decode: their bytes back to back, where each line ends, and each line's
/// number in its input. Blank lines are never added.
#[derive(Debug, Default)]
pub struct Chunk {
    /// The input the lines came from (its position in the run's inputs).
    pub input: usize,
    bytes: Vec<u8>,
    lines: Vec<(usize, u64)>,
    /// Room for the lines' outcomes, kept empty here: the decoder fills it, the admitter
    /// empties it and gives it back with the chunk (see [`Decoded::into_chunk`]).
    outcomes: Vec<Result<Event, Rejection>>,
}

impl Chunk {
    /// An empty chunk of lines from input `input`.
    pub fn new(input: usize) -> Self {
        Chunk {
            input,
            // Room for a chunk of typical events (about 200 bytes) at once.
            bytes: Vec::with_capacity(CHUNK_LINES * 256),
            lines: Vec::with_capacity(CHUNK_LINES),
            outcomes: Vec::new(),
        }
    }

    /// This chunk emptied for lines of input `input`, its buffers kept: the reader reuses
    /// admitted chunks rather than fault in fresh pages for every 1024 lines.
    pub fn recycle(mut self, input: usize) -> Self {
        self.input = input;
        self.bytes.clear();
        self.lines.clear();
        self
    }

    /// Adds one line (without its line end) with its line number.
    pub fn push(&mut self, line: &[u8], line_no: u64) {
        self.bytes.extend_from_slice(line);
        self.lines.push((self.bytes.len(), line_no));
    }

    /// Lines held.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether no line is held.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Each line with its number, in order.
    pub fn lines(&self) -> impl Iterator<Item = (&[u8], u64)> {
        let mut start = 0;
        self.lines.iter().map(move |&(end, line_no)| {
            let line = &self.bytes[start..end];
            start = end;
            (line, line_no)
        })
    }
}

/// A chunk and the outcome of each of its lines, in the chunk's order.
pub struct Decoded {
    /// The lines.
    pub chunk: Chunk,
    /// One outcome per line.
    pub results: Vec<Result<Event, Rejection>>,
}

impl Decoded {
    /// The chunk, to be reused, with the outcomes' vector as its room for the next ones:
    /// the vector is filled on a decoder thread and emptied on the admitter's, and a fresh
    /// one per chunk would be pages faulted in anew each time.
    pub fn into_chunk(mut self) -> Chunk {
        self.results.clear();
        self.chunk.outcomes = self.results;
        self.chunk
    }
}

/// The decoder threads, and the chunks submitted to them not yet taken back.
pub struct Decoders {
    jobs: Option<Sender<(u64, Chunk)>>,
    results: Receiver<(u64, Decoded)>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Decoded chunks that arrived ahead of their turn.
    early: BTreeMap<u64, Decoded>,
    submitted: u64,
    taken: u64,
    capacity: u64,
}

/// A decoder thread stopped without handing its chunk back (it panicked).
#[derive(Debug, thiserror::Error)]
#[error("a decoder thread stopped")]
pub struct DecoderStopped;

impl Decoders {
    /// Starts `threads` decoder threads; `max_future` bounds `occurred_at` as in
    /// [`latest_occurred_at`], read from the clock once per chunk.
    pub fn start(threads: usize, max_future: Nanos) -> Self {
        let threads = threads.max(1);
        let capacity = threads * IN_FLIGHT_PER_DECODER;
        // Both channels hold every chunk in flight: neither side ever blocks on a send.
        let (jobs_tx, jobs_rx) = bounded::<(u64, Chunk)>(capacity);
        let (results_tx, results_rx) = bounded::<(u64, Decoded)>(capacity);
        let handles = (0..threads)
            .map(|i| {
                let jobs = jobs_rx.clone();
                let results = results_tx.clone();
                std::thread::Builder::new()
                    .name(format!("decoder-{i}"))
                    .spawn(move || decode_chunks(&jobs, &results, max_future))
                    .expect("spawning a decoder thread")
            })
            .collect();
        Decoders {
            jobs: Some(jobs_tx),
            results: results_rx,
            threads: handles,
            early: BTreeMap::new(),
            submitted: 0,
            taken: 0,
            capacity: capacity as u64,
        }
    }

    /// Whether another chunk may be submitted without waiting for results first.
    pub fn has_room(&self) -> bool {
        self.submitted - self.taken < self.capacity
    }

    /// Whether chunks are submitted and not yet taken back.
    pub fn pending(&self) -> bool {
        self.submitted > self.taken
    }

    /// Hands a chunk to the decoders. Call only while [`Decoders::has_room`].
    pub fn submit(&mut self, chunk: Chunk) -> Result<(), DecoderStopped> {
        debug_assert!(self.has_room());
        let jobs = self.jobs.as_ref().ok_or(DecoderStopped)?;
        jobs.send((self.submitted, chunk))
            .map_err(|_| DecoderStopped)?;
        self.submitted += 1;
        Ok(())
    }

    /// The oldest chunk not yet taken back, decoded (waits for it). Call only while
    /// [`Decoders::pending`].
    pub fn next(&mut self) -> Result<Decoded, DecoderStopped> {
        loop {
            if let Some(d) = self.early.remove(&self.taken) {
                self.taken += 1;
                return Ok(d);
            }
            let (seq, decoded) = self.results.recv().map_err(|_| DecoderStopped)?;
            self.early.insert(seq, decoded);
        }
    }
}

impl Drop for Decoders {
    fn drop(&mut self) {
        // Closing the job channel ends every decoder's loop.
        self.jobs.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn decode_chunks(
    jobs: &Receiver<(u64, Chunk)>,
    results: &Sender<(u64, Decoded)>,
    max_future: Nanos,
) {
    for (seq, mut chunk) in jobs {
        let latest = latest_occurred_at(max_future);
        let mut outcomes = std::mem::take(&mut chunk.outcomes);
        outcomes.extend(chunk.lines().map(|(line, _)| decode_at(line, None, latest)));
        let decoded = Decoded {
            chunk,
            results: outcomes,
        };
        if results.send((seq, decoded)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: usize) -> Vec<u8> {
        format!(
            r#"{{"event_id":"e{id}","type":"enterprise.deregistered","occurred_at":"2024-01-01T00:00:00Z","enterprise_id":"x{id}"}}"#
        )
        .into_bytes()
    }

    /// Chunks come back in submission order whatever order the threads finish in, each
    /// line's outcome beside its line.
    #[test]
    fn results_come_back_in_input_order() {
        let mut decoders = Decoders::start(3, Nanos::MAX / 2);
        let mut expected = Vec::new();
        let mut got = Vec::new();
        let mut id = 0;
        for c in 0..40 {
            let mut chunk = Chunk::new(0);
            // Chunks of different sizes finish at different times.
            for _ in 0..(1 + (c * 7) % 50) {
                id += 1;
                chunk.push(&line(id), id as u64);
                expected.push(format!("e{id}"));
            }
            chunk.push(b"not json", 0);
            expected.push("rejected".to_string());
            while !decoders.has_room() {
                collect(&mut decoders, &mut got);
            }
            decoders.submit(chunk).expect("decoders running");
        }
        while decoders.pending() {
            collect(&mut decoders, &mut got);
        }
        assert_eq!(got, expected);
    }

    fn collect(decoders: &mut Decoders, got: &mut Vec<String>) {
        let d = decoders.next().expect("decoders running");
        assert_eq!(d.results.len(), d.chunk.len());
        for ((raw, _), r) in d.chunk.lines().zip(&d.results) {
            match r {
                Ok(e) => {
                    assert!(String::from_utf8_lossy(raw).contains(e.id.as_str()));
                    got.push(e.id.to_string());
                }
                Err(_) => got.push("rejected".to_string()),
            }
        }
    }
}
