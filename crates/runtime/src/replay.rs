//! Replay: JSON Lines files in (any mix of streams, several files read as one sequence),
//! the line-protocol file and the dead-letter file out (docs/outputs.md), ticks closed at
//! end of input (docs/indicators.md, "Ticks and watermarks"). [`run`] is the pipeline
//! itself, shared with the demo, which feeds it the generator's lines instead of files.
//!
//! The reader hands chunks of lines to decoder threads and admits the decoded events in
//! input order (so duplicates and `too_late` follow the sequence exactly), hands accepted
//! events to the dataflow workers in epochs with the streams' watermarks, and at end of input
//! closes every tick up to the first tick after the greatest accepted `occurred_at`.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use paceline_dataflow::{DataflowSettings, Recycle, Runner, WatermarkReport};
use paceline_decode::{Admission, Reason, Rejection, MAX_EVENT_BYTES};
use paceline_model::config::{Config, PlanSpec};
use paceline_model::point::Point;
use paceline_model::{Event, Nanos, SeriesKey, Stream};
use paceline_sink::LineProtocolFile;

use crate::admit::{admit, AdmissionSink};
use crate::board::Board;
use crate::decoders::{Chunk, Decoded, Decoders, CHUNK_LINES};
use crate::progress::Progress;

/// What to replay and where to write.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Input files, read as one sequence in this order.
    pub inputs: Vec<PathBuf>,
    /// The line-protocol output file.
    pub output: PathBuf,
    /// The dead-letter file (JSON Lines).
    pub dead_letters: PathBuf,
}

/// Replay failed: an input could not be read or an output written.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// An input is missing or unreadable.
    #[error("cannot read input {path}: {source}")]
    Input {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// An output could not be written.
    #[error("cannot write {path}: {source}")]
    Output {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The dataflow failed.
    #[error("dataflow failed: {0}")]
    Dataflow(#[from] paceline_dataflow::RunnerError),
    /// The thread writing the line protocol panicked.
    #[error("the output writer panicked")]
    WriterPanicked,
    /// A decoder thread panicked.
    #[error("decoding failed: {0}")]
    Decoder(#[from] crate::decoders::DecoderStopped),
}

/// Counts of one replay.
#[derive(Debug, Clone, Default)]
pub struct ReplaySummary {
    /// Accepted events by stream.
    pub accepted: [u64; 3],
    /// Duplicates by stream.
    pub duplicates: [u64; 3],
    /// Rejected events by (stream name or `unknown`, reason).
    pub rejected: BTreeMap<(&'static str, &'static str), u64>,
    /// Distinct series written.
    pub series: usize,
    /// Points written.
    pub points: u64,
    /// Corrections (points rewritten) by stream.
    pub corrections: [u64; 3],
    /// Corrections that could not be represented.
    pub unrepresentable: u64,
    /// Lines read (events, including rejected; blank lines excluded).
    pub events: u64,
    /// Each stream's watermark at the end, by [`Stream::index`].
    pub watermarks: [Option<Nanos>; 3],
    /// The planned series and their newest points, in the plan's order.
    pub planned: Vec<(PlanSpec, Option<Point>)>,
    /// The verdicts written.
    pub verdicts: Vec<Point>,
    /// Wall time.
    pub elapsed: Duration,
}

impl ReplaySummary {
    /// Total rejected events.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Events per second over the whole run.
    pub fn events_per_s(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A readable multi-line summary, ending with the planned indicators' final statuses;
    /// `color` colours the statuses (for a terminal).
    pub fn render(&self, color: bool) -> String {
        let mut s = String::new();
        let total = |a: &[u64; 3]| a.iter().sum::<u64>();
        s.push_str(&format!("events read:   {}\n", self.events));
        s.push_str(&format!("accepted:      {}", total(&self.accepted)));
        for st in Stream::ALL {
            s.push_str(&format!("  {}={}", st.as_str(), self.accepted[st.index()]));
        }
        s.push_str(&format!("\nduplicates:    {}\n", total(&self.duplicates)));
        s.push_str(&format!("rejected:      {}\n", self.rejected_total()));
        let mut by_reason: BTreeMap<&str, u64> = BTreeMap::new();
        for ((_, r), n) in &self.rejected {
            *by_reason.entry(r).or_default() += n;
        }
        for (r, n) in by_reason {
            s.push_str(&format!("  {r:<14} {n}\n"));
        }
        s.push_str(&format!("series:        {}\n", self.series));
        s.push_str(&format!("points:        {}\n", self.points));
        s.push_str(&format!("corrections:   {}\n", total(&self.corrections)));
        if self.unrepresentable > 0 {
            s.push_str(&format!(
                "unrepresentable corrections: {}\n",
                self.unrepresentable
            ));
        }
        s.push_str(&format!(
            "elapsed:       {:.3} s ({:.0} events/s)\n",
            self.elapsed.as_secs_f64(),
            self.events_per_s()
        ));
        if !self.planned.is_empty() {
            s.push_str("\nplanned indicators at their last tick:\n");
            s.push_str(&crate::table::render(
                &self.planned,
                &self.verdicts,
                paceline_model::names::Lang::En,
                color,
            ));
        }
        s
    }
}

/// Where rejected lines go: replay's dead-letter file, or nowhere but the counts (demo).
pub trait DeadLetterSink {
    /// Keeps one rejected line.
    fn write(
        &mut self,
        rejection: &Rejection,
        file: &str,
        line_no: u64,
        raw: &[u8],
    ) -> Result<(), ReplayError>;
    /// Keeps one line longer than the event limit, streamed: `head` is its start, the
    /// rest is read from `rest` up to and including the line's end. Never holds the line.
    fn write_long(
        &mut self,
        rejection: &Rejection,
        file: &str,
        line_no: u64,
        head: &[u8],
        rest: &mut dyn BufRead,
    ) -> Result<u64, ReplayError>;
    /// Makes everything written durable.
    fn finish(&mut self) -> Result<(), ReplayError>;
}

/// Reads the rest of a line (through its `\n`, or to the end of input) in the reader's own
/// buffer-sized pieces, handing each to `f`; returns the bytes consumed.
pub fn stream_rest_of_line(
    reader: &mut dyn BufRead,
    mut f: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    let mut total = 0u64;
    loop {
        let avail = reader.fill_buf()?;
        if avail.is_empty() {
            return Ok(total);
        }
        let (take, done) = match memchr::memchr(b'\n', avail) {
            Some(i) => (i, true),
            None => (avail.len(), false),
        };
        f(&avail[..take])?;
        let consumed = take + usize::from(done);
        reader.consume(consumed);
        total += consumed as u64;
        if done {
            return Ok(total);
        }
    }
}

/// Takes the next line (without its `\n`) if the reader's buffer holds all of it, as it
/// does for most lines, and hands it to `f` in place; returns the bytes consumed, or `None`
/// when the line must be read piecewise ([`read_line_capped`]). The window is that function's:
/// a line found here is one it reads whole.
fn take_buffered_line(
    reader: &mut dyn BufRead,
    cap: usize,
    f: impl FnOnce(&[u8]),
) -> std::io::Result<Option<u64>> {
    let avail = reader.fill_buf()?;
    let look = &avail[..avail.len().min(cap + 2)];
    let Some(i) = memchr::memchr(b'\n', look) else {
        return Ok(None);
    };
    f(&look[..i]);
    reader.consume(i + 1);
    Ok(Some(i as u64 + 1))
}

/// Adds a line read whole to the chunk: a `\r` before its `\n` is the line end's, and an
/// empty line is no event.
fn push_line(chunk: &mut Chunk, line: &[u8], line_no: u64) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if !line.is_empty() {
        chunk.push(line, line_no);
    }
}

/// How [`read_line_capped`] found the line.
#[derive(Debug, PartialEq, Eq)]
enum LineRead {
    /// End of input.
    End,
    /// The whole line is in the buffer (without its `\n`).
    Whole,
    /// Longer than the cap: its start is in the buffer, the rest unread.
    Long,
}

/// Reads the next line into `buf` (cleared first), holding at most `cap + 2` bytes of it:
/// enough to tell a line over `cap` bytes (line end aside) from one that is not.
fn read_line_capped(
    reader: &mut dyn BufRead,
    buf: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<(u64, LineRead)> {
    buf.clear();
    let window = cap + 2;
    let mut consumed = 0u64;
    loop {
        let avail = reader.fill_buf()?;
        if avail.is_empty() {
            let state = if consumed == 0 {
                LineRead::End
            } else {
                LineRead::Whole
            };
            return Ok((consumed, state));
        }
        let room = window - buf.len();
        let look = &avail[..avail.len().min(room)];
        if let Some(i) = memchr::memchr(b'\n', look) {
            buf.extend_from_slice(&look[..i]);
            reader.consume(i + 1);
            return Ok((consumed + i as u64 + 1, LineRead::Whole));
        }
        let take = look.len();
        buf.extend_from_slice(look);
        reader.consume(take);
        consumed += take as u64;
        if buf.len() >= window {
            return Ok((consumed, LineRead::Long));
        }
    }
}

/// Where points go, on the writer thread: replay's line-protocol file, or only the count
/// (demo). Every point also reaches the run's [`Board`].
pub trait PointSink: Send + 'static {
    /// Writes one batch.
    fn write(&mut self, points: &[Point]) -> Result<(), ReplayError>;
    /// Flushes; returns the number of points written.
    fn finish(self: Box<Self>) -> Result<u64, ReplayError>;
}

/// One input of a run: its name (in dead letters and errors), its lines and, when known,
/// its size in bytes (for the progress bar).
pub struct Input {
    /// Named in dead letters and errors: a file's path, or what generated the lines.
    pub name: String,
    /// JSON Lines, one event per line.
    pub reader: Box<dyn BufRead + Send>,
    /// Bytes in all, when known: the progress bar's total.
    pub len: Option<u64>,
}

struct DeadLetterFile {
    path: String,
    out: BufWriter<std::fs::File>,
}

impl DeadLetterFile {
    fn output_error(&self, source: std::io::Error) -> ReplayError {
        ReplayError::Output {
            path: self.path.clone(),
            source,
        }
    }
}

impl DeadLetterSink for DeadLetterFile {
    fn write_long(
        &mut self,
        rejection: &Rejection,
        file: &str,
        line_no: u64,
        head: &[u8],
        rest: &mut dyn BufRead,
    ) -> Result<u64, ReplayError> {
        let mut obj = serde_json::Map::new();
        obj.insert("reason".into(), rejection.reason.as_str().into());
        obj.insert("stream".into(), rejection.stream_name().into());
        obj.insert("file".into(), file.into());
        obj.insert("line".into(), line_no.into());
        obj.insert("detail".into(), rejection.detail.clone().into());
        let open = serde_json::Value::Object(obj).to_string();
        // The object without its closing brace, then the bytes in base64 as they are read
        // (3-byte groups, the remainder carried over), then their count.
        let out = &mut self.out;
        let result = (|| -> std::io::Result<u64> {
            out.write_all(&open.as_bytes()[..open.len() - 1])?;
            out.write_all(b",\"raw_base64\":\"")?;
            let engine = &base64::engine::general_purpose::STANDARD;
            let mut carry: Vec<u8> = Vec::with_capacity(3);
            let mut encode =
                |piece: &[u8], out: &mut BufWriter<std::fs::File>| -> std::io::Result<()> {
                    carry.extend_from_slice(piece);
                    let whole = carry.len() / 3 * 3;
                    out.write_all(engine.encode(&carry[..whole]).as_bytes())?;
                    carry.drain(..whole);
                    Ok(())
                };
            for piece in head.chunks(3 * 4096) {
                encode(piece, out)?;
            }
            let mut total = head.len() as u64;
            let read = stream_rest_of_line(rest, |piece| {
                total += piece.len() as u64;
                piece.chunks(3 * 4096).try_for_each(|p| encode(p, out))
            })?;
            out.write_all(engine.encode(&carry).as_bytes())?;
            writeln!(out, "\",\"bytes\":{total}}}")?;
            Ok(read)
        })();
        result.map_err(|e| self.output_error(e))
    }

    fn write(
        &mut self,
        rejection: &Rejection,
        file: &str,
        line_no: u64,
        raw: &[u8],
    ) -> Result<(), ReplayError> {
        let mut obj = serde_json::Map::new();
        obj.insert("reason".into(), rejection.reason.as_str().into());
        obj.insert("stream".into(), rejection.stream_name().into());
        obj.insert("file".into(), file.into());
        obj.insert("line".into(), line_no.into());
        obj.insert("detail".into(), rejection.detail.clone().into());
        match std::str::from_utf8(raw) {
            Ok(text) => obj.insert("raw".into(), text.into()),
            Err(_) => obj.insert(
                "raw_base64".into(),
                base64::engine::general_purpose::STANDARD.encode(raw).into(),
            ),
        };
        let mut line = serde_json::Value::Object(obj).to_string();
        line.push('\n');
        self.out
            .write_all(line.as_bytes())
            .map_err(|source| ReplayError::Output {
                path: self.path.clone(),
                source,
            })
    }

    fn finish(&mut self) -> Result<(), ReplayError> {
        self.out.flush().map_err(|e| self.output_error(e))?;
        let file = self.out.get_ref();
        if paceline_sink::syncable(file) {
            file.sync_all().map_err(|e| self.output_error(e))?;
        }
        Ok(())
    }
}

struct LineProtocolSink(LineProtocolFile);

fn lp_error(e: paceline_sink::SinkError) -> ReplayError {
    ReplayError::Output {
        path: e.path,
        source: e.source,
    }
}

impl PointSink for LineProtocolSink {
    fn write(&mut self, points: &[Point]) -> Result<(), ReplayError> {
        self.0.write(points).map_err(lp_error)
    }

    fn finish(self: Box<Self>) -> Result<u64, ReplayError> {
        self.0.finish().map_err(lp_error)
    }
}

fn reports(admission: &Admission, end: Option<Nanos>) -> Vec<WatermarkReport> {
    Stream::ALL
        .iter()
        .filter(|s| admission.max_accepted(**s).is_some())
        .map(|&stream| WatermarkReport {
            source: 0,
            stream,
            watermark: admission.watermark(stream),
            earliest: admission.min_accepted(stream),
            end_of_input: end,
            idle: false,
        })
        .collect()
}

/// Runs a replay. Inputs are opened before anything is written: a missing one is an error.
pub fn replay(config: &Config, opts: &ReplayOptions) -> Result<ReplaySummary, ReplayError> {
    let mut inputs = Vec::new();
    for path in &opts.inputs {
        let name = path.display().to_string();
        let open_error = |source| ReplayError::Input {
            path: name.clone(),
            source,
        };
        let f = std::fs::File::open(path).map_err(open_error)?;
        let len = f.metadata().ok().map(|m| m.len());
        inputs.push(Input {
            reader: Box::new(BufReader::with_capacity(1 << 20, f)),
            name,
            len,
        });
    }
    let out_path = opts.output.display().to_string();
    let lp = LineProtocolFile::create(
        &out_path,
        &paceline_sink::Measurements::from_config(&config.indicators),
    )
    .map_err(lp_error)?;
    let dl_path = opts.dead_letters.display().to_string();
    let dl_file =
        std::fs::File::create(&opts.dead_letters).map_err(|source| ReplayError::Output {
            path: dl_path.clone(),
            source,
        })?;
    let mut dead = DeadLetterFile {
        path: dl_path,
        out: BufWriter::new(dl_file),
    };
    let board = Arc::new(Board::new(config.plan_specs()));
    run(
        config,
        inputs,
        Box::new(LineProtocolSink(lp)),
        &mut dead,
        &board,
    )
}

/// The greatest accepted `occurred_at` of any stream: the event time reached, and at end of
/// input the instant every tick closes up to.
fn end_of_input(admission: &Admission) -> Option<Nanos> {
    Stream::ALL
        .iter()
        .filter_map(|s| admission.max_accepted(*s))
        .max()
}

/// Admission on the reader's thread: decoded lines in input order in, accepted events to
/// the dataflow in epochs, rejected lines to the dead letters, the counts kept.
struct Admitter<'r> {
    runner: &'r Runner,
    admission: Admission,
    summary: ReplaySummary,
    pending: Vec<Vec<Event>>,
    pending_count: usize,
    next_worker: usize,
    epoch_events: usize,
    names: Arc<[String]>,
}

impl Admitter<'_> {
    /// Admits one decoded chunk, line by line in order; gives the chunk back for reuse.
    fn admit_chunk(
        &mut self,
        mut decoded: Decoded,
        dead: &mut dyn DeadLetterSink,
    ) -> Result<Chunk, ReplayError> {
        let names = self.names.clone();
        let name = &names[decoded.chunk.input];
        for ((line, line_no), result) in decoded.chunk.lines().zip(decoded.results.drain(..)) {
            self.summary.events += 1;
            let mut sink = ReplayRejections {
                summary: &mut self.summary,
                dead: &mut *dead,
                name,
            };
            let Some(event) = admit(&mut self.admission, result, &line_no, line, &mut sink)? else {
                continue;
            };
            // To the worker holding its entity, which takes it where it arrives (the runner
            // is one process, so `worker_of` always answers; a cluster member would not be
            // `input_routed`, and its exchange would route whatever this picks).
            let worker = self.runner.worker_of(&event).unwrap_or_else(|| {
                self.next_worker = (self.next_worker + 1) % self.pending.len();
                self.next_worker
            });
            self.pending[worker].push(event);
            self.pending_count += 1;
            if self.pending_count >= self.epoch_events {
                self.send_epoch(None)?;
            }
        }
        Ok(decoded.into_chunk())
    }

    /// Sends the events gathered so far as one epoch with the streams' watermarks;
    /// `end` marks the end of input.
    fn send_epoch(&mut self, end: Option<Nanos>) -> Result<(), ReplayError> {
        self.runner
            .send_all(&mut self.pending, reports(&self.admission, end))?;
        self.pending_count = 0;
        Ok(())
    }
}

/// Replay's outcomes: the summary's counts, rejected lines to the dead-letter file with
/// their input's name and line.
struct ReplayRejections<'a> {
    summary: &'a mut ReplaySummary,
    dead: &'a mut dyn DeadLetterSink,
    name: &'a str,
}

impl AdmissionSink for ReplayRejections<'_> {
    type Origin = u64;
    type Error = ReplayError;

    fn accepted(&mut self, stream: Stream) {
        self.summary.accepted[stream.index()] += 1;
    }

    fn duplicate(&mut self, stream: Stream) {
        self.summary.duplicates[stream.index()] += 1;
    }

    fn rejected(
        &mut self,
        rejection: &Rejection,
        line_no: &u64,
        raw: &[u8],
    ) -> Result<(), ReplayError> {
        count_rejection(self.summary, rejection);
        self.dead.write(rejection, self.name, *line_no, raw)
    }
}

fn count_rejection(summary: &mut ReplaySummary, rejection: &Rejection) {
    *summary
        .rejected
        .entry((rejection.stream_name(), rejection.reason.as_str()))
        .or_default() += 1;
}

/// Lines read and decoded ahead of admission: chunks go to the decoder threads, and come
/// back to the admitter in input order.
struct Reader {
    decoders: Decoders,
    chunk: Chunk,
    /// Admitted chunks, emptied, for the next lines.
    spare: Vec<Chunk>,
}

impl Reader {
    /// Hands the current chunk to the decoders (admitting finished chunks first while
    /// every decoder slot is taken); the next lines come from input `input`.
    fn submit(
        &mut self,
        input: usize,
        admitter: &mut Admitter<'_>,
        dead: &mut dyn DeadLetterSink,
    ) -> Result<(), ReplayError> {
        let next = match self.spare.pop() {
            Some(c) => c.recycle(input),
            None => Chunk::new(input),
        };
        let chunk = std::mem::replace(&mut self.chunk, next);
        if chunk.is_empty() {
            self.spare.push(chunk);
            return Ok(());
        }
        while !self.decoders.has_room() {
            let done = admitter.admit_chunk(self.decoders.next()?, dead)?;
            self.spare.push(done);
        }
        Ok(self.decoders.submit(chunk)?)
    }

    /// Submits the current chunk and admits everything submitted: every line read so far
    /// is then admitted, in order.
    fn drain(
        &mut self,
        input: usize,
        admitter: &mut Admitter<'_>,
        dead: &mut dyn DeadLetterSink,
    ) -> Result<(), ReplayError> {
        self.submit(input, admitter, dead)?;
        while self.decoders.pending() {
            let done = admitter.admit_chunk(self.decoders.next()?, dead)?;
            self.spare.push(done);
        }
        Ok(())
    }
}

/// The writer thread: each batch of points to `points` and `board`, the emptied vector
/// back to the series operators; returns the points written and the series seen.
fn spawn_writer(
    batches: crossbeam_channel::Receiver<Vec<Point>>,
    mut points: Box<dyn PointSink>,
    board: Arc<Board>,
    spare: Recycle<Point>,
) -> std::thread::JoinHandle<Result<(u64, usize), ReplayError>> {
    std::thread::spawn(move || {
        let mut series: HashSet<SeriesKey> = HashSet::new();
        for batch in batches {
            series.extend(batch.iter().map(|p| p.series));
            board.record(&batch);
            points.write(&batch)?;
            spare.give(batch);
        }
        Ok((points.finish()?, series.len()))
    })
}

/// How many threads decode: the cores the workers leave, at least one and at most one per
/// worker. Decoding is about a fifth of replay's CPU, so one decoder keeps up with two
/// workers; a thread more than there are cores only adds switches between them (on 2
/// cores with 2 workers, one decoder ran 4–6 % faster than two: README, "Performance").
fn decoder_threads(workers: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = workers.max(1);
    cores.saturating_sub(workers).clamp(1, workers)
}

/// The pipeline of replay and demo: lines in, in order, decoded on decoder threads
/// ([`decoder_threads`]) and admitted on this thread in input order (so duplicates and `too_late`
/// follow the sequence exactly), accepted events to the dataflow in epochs, points to
/// `points` and `board` on a writer thread, rejected lines to `dead`. At end of input
/// every tick up to the first tick after the greatest accepted `occurred_at` closes. A
/// progress bar over the inputs' bytes is drawn on a terminal.
pub fn run(
    config: &Config,
    mut inputs: Vec<Input>,
    points: Box<dyn PointSink>,
    dead: &mut dyn DeadLetterSink,
    board: &Arc<Board>,
) -> Result<ReplaySummary, ReplayError> {
    let started = Instant::now();
    let progress = Progress::for_terminal(inputs.iter().map(|i| i.len).sum::<Option<u64>>());
    let (points_tx, points_rx) = crossbeam_channel::bounded::<Vec<Point>>(64);
    let settings = DataflowSettings {
        // The admitter hands each event to its entity's worker (`Runner::worker_of`).
        input_routed: true,
        ..DataflowSettings::from_config(config)
    };
    let out: paceline_dataflow::PointsOut = Arc::new(move |_epoch, points| {
        // The writer is gone only when the run is being torn down after an error.
        let _ = points_tx.send(points);
    });
    let runner = Runner::start(settings, out, None)?;
    let sink = spawn_writer(points_rx, points, board.clone(), runner.point_vecs());
    let workers = runner.workers();
    let mut admitter = Admitter {
        runner: &runner,
        admission: Admission::new(&config.streams),
        summary: ReplaySummary::default(),
        pending: vec![Vec::new(); workers],
        pending_count: 0,
        next_worker: 0,
        epoch_events: config.dataflow.epoch_events.max(1),
        names: inputs
            .iter()
            .map(|i| i.name.clone())
            .collect::<Vec<_>>()
            .into(),
    };
    let mut reader = Reader {
        decoders: Decoders::start(decoder_threads(workers), config.streams.max_future()),
        chunk: Chunk::new(0),
        spare: Vec::new(),
    };
    let mut bytes = 0u64;
    let mut line = Vec::with_capacity(4096);
    let result = (|| -> Result<(), ReplayError> {
        for (index, input) in inputs.iter_mut().enumerate() {
            reader.submit(index, &mut admitter, dead)?;
            let name = &input.name;
            let source = &mut input.reader;
            let mut line_no = 0u64;
            loop {
                let input_error = |source| ReplayError::Input {
                    path: name.clone(),
                    source,
                };
                let buffered = take_buffered_line(source, MAX_EVENT_BYTES, |text| {
                    line_no += 1;
                    push_line(&mut reader.chunk, text, line_no);
                })
                .map_err(input_error)?;
                if let Some(n) = buffered {
                    bytes += n;
                } else {
                    let (n, state) = read_line_capped(source, &mut line, MAX_EVENT_BYTES)
                        .map_err(input_error)?;
                    if state == LineRead::End {
                        break;
                    }
                    bytes += n;
                    line_no += 1;
                    if state == LineRead::Long {
                        // Over the limit whatever its end: rejected as it streams past, after
                        // every line before it (the dead letters stay in input order).
                        reader.drain(index, &mut admitter, dead)?;
                        admitter.summary.events += 1;
                        let rejection = Rejection {
                            reason: Reason::TooLarge,
                            stream: None,
                            detail: format!("over {MAX_EVENT_BYTES} bytes"),
                        };
                        count_rejection(&mut admitter.summary, &rejection);
                        bytes += dead.write_long(&rejection, name, line_no, &line, source)?;
                        continue;
                    }
                    push_line(&mut reader.chunk, &line, line_no);
                }
                if reader.chunk.len() >= CHUNK_LINES {
                    reader.submit(index, &mut admitter, dead)?;
                    progress.update(
                        bytes,
                        admitter.summary.events,
                        end_of_input(&admitter.admission),
                    );
                }
            }
        }
        reader.drain(0, &mut admitter, dead)?;
        let end = end_of_input(&admitter.admission);
        progress.update(bytes, admitter.summary.events, end);
        admitter.send_epoch(end)?;
        Ok(())
    })();
    drop(reader);
    let Admitter {
        admission,
        mut summary,
        ..
    } = admitter;
    progress.finish();
    let stats = runner.finish()?;
    result?;
    dead.finish()?;
    let (points, series) = sink.join().map_err(|_| ReplayError::WriterPanicked)??;
    summary.points = points;
    summary.series = series;
    for s in Stream::ALL {
        summary.corrections[s.index()] =
            stats.corrections[s.index()].load(std::sync::atomic::Ordering::Relaxed);
        summary.watermarks[s.index()] = admission.watermark(s);
    }
    summary.unrepresentable = stats
        .unrepresentable
        .load(std::sync::atomic::Ordering::Relaxed);
    summary.planned = board.planned_latest();
    summary.verdicts = board.verdicts();
    summary.elapsed = started.elapsed();
    Ok(summary)
}
