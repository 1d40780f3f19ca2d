//! Checkpoints: the whole state of a serve run at one aligned point of its input, on disk.
//!
//! A checkpoint holds the dataflow's state (one part per worker, from an aligned snapshot),
//! the coordinator's admission state, partition progress and watermarks, and every
//! partition's next offset, all describing the same point of the input. It counts only
//! once every point emitted before it is acknowledged by the database and every dead
//! letter queued before it is acknowledged by the broker; then it is written.
//!
//! Format: one file per checkpoint, `checkpoint-<sequence>.bin`: an 8-byte magic, the
//! format version, a CRC-32 of the payload, the payload's length, and the payload
//! (bincode). Written to a temporary file, fsynced, renamed, the directory fsynced: a
//! checkpoint is either whole or absent, and one torn or garbled anyway (a disk fault, a
//! copy gone wrong) fails its length or checksum and is skipped for the one before. The
//! newest [`KEEP`] valid files are kept; invalid ones never count among them. A file of
//! the previous format ([`MIGRATES_FROM`]) is read and migrated, the next checkpoint
//! written in this one; a file of any other format version is never skipped: the start is
//! refused, naming the versions.
//!
//! The directory belongs to one process at a time: an exclusive lock on `paceline.lock`
//! (holding its pid) is taken when the store opens, and the directory is proven writable
//! then, not at the first checkpoint.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use paceline_decode::{AdmissionState, PartitionState};
use paceline_ingest::OffsetCommitter;
use paceline_model::config::Config;
use paceline_model::{Indicator, Nanos, Stream};
use serde::{Deserialize, Serialize};

use super::commit::{CommitProgress, Mark};
use super::metrics::ServeMetrics;
use crate::board::Board;

/// Bumped whenever the payload's layout changes: an older file is refused, named.
/// 2: the series state is kept per shard (a group, or one tag of a group), not per group.
/// 3: the process count, and the watermarks of every source in each worker's part.
/// 4: each planned series keeps the plan verdict it wrote.
/// 5: the process index and the routing version among the settings it depends on.
/// 6: the verdict measurement among them too (migrated from 5: see [`v5`]).
pub const FORMAT_VERSION: u32 = 6;
/// The previous format, read and migrated (an upgrade keeps its state).
pub const MIGRATES_FROM: u32 = 5;
const MAGIC: &[u8; 8] = b"PCLNCKPT";
const HEADER: usize = 8 + 4 + 4 + 8;
/// Checkpoints kept: the newest, and two to fall back on.
pub const KEEP: usize = 3;

/// Checkpoints could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The state directory or a file in it.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint file is not a valid checkpoint.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The newest valid checkpoint was taken with settings this configuration changes.
    #[error("the checkpoint {path} was taken with another configuration ({}); start with `paceline serve --rebuild` to rebuild the state from the topics' beginning, or restore the previous settings", differences.join("; "))]
    Incompatible {
        /// The file.
        path: PathBuf,
        /// What differs, each as `key: checkpoint …, configuration …`.
        differences: Vec<String>,
    },
    /// State could not be serialized.
    #[error("cannot serialize the checkpoint: {0}")]
    Encode(String),
    /// A checkpoint of another format version: never skipped, since starting without it
    /// would re-read the topics from their beginning unasked.
    #[error("{path}: checkpoint format {found}, and this build reads format {reads} (and migrates format {MIGRATES_FROM}); start with `paceline serve --rebuild` to rebuild the state from the topics' beginning, or run the paceline version that wrote it")]
    OtherFormat {
        /// The file.
        path: PathBuf,
        /// Its format version.
        found: u32,
        /// The version this build reads.
        reads: u32,
    },
    /// Another process holds the state directory.
    #[error("{dir} is in use by another paceline process ({holder}): each process needs a state directory of its own")]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// Who holds it, from the lock file.
        holder: String,
    },
}

/// The settings a checkpoint's state depends on: a checkpoint taken with other values is
/// refused (plan items are not among them: plan edits apply to a restored state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compatibility {
    /// `dataflow.workers`: entities and groups are divided by worker.
    pub workers: usize,
    /// This process's index in its cluster (0 alone): its part of the state is its own.
    pub process: usize,
    /// How entities and series are placed on workers ([`paceline_dataflow::ROUTING_VERSION`]).
    pub routing: u32,
    /// Processes of the cluster (`cluster.processes`; 1 alone): so are they.
    pub processes: usize,
    /// Cadence per indicator.
    pub cadences: Vec<(String, Nanos)>,
    /// Correction horizon per stream.
    pub horizons: Vec<(String, Nanos)>,
    /// `indicators.filing_lag_days`, in nanoseconds.
    pub filing_lag: Nanos,
    /// The measurement written.
    pub measurement: String,
    /// Topic per stream: the offsets are theirs.
    pub topics: Vec<(String, String)>,
    /// `indicators.verdict_measurement`: verdicts written there are not written again.
    /// `None` in a checkpoint migrated from format 5, which did not record it.
    pub verdict_measurement: Option<String>,
}

impl Compatibility {
    /// The settings of `config`, run as process `process` of `processes`.
    pub fn of(config: &Config, process: usize, processes: usize) -> Self {
        Compatibility {
            workers: config.dataflow.workers.max(1),
            process,
            routing: paceline_dataflow::ROUTING_VERSION,
            processes: processes.max(1),
            cadences: Indicator::ALL
                .iter()
                .map(|i| (i.name().to_string(), config.cadence(*i)))
                .collect(),
            horizons: Stream::ALL
                .iter()
                .map(|s| (s.as_str().to_string(), config.streams.get(*s).horizon()))
                .collect(),
            filing_lag: config.filing_lag(),
            measurement: config.indicators.measurement.clone(),
            topics: Stream::ALL
                .iter()
                .map(|s| (s.as_str().to_string(), config.streams.get(*s).topic.clone()))
                .collect(),
            verdict_measurement: Some(config.indicators.verdict_measurement.clone()),
        }
    }

    /// What differs from `now`, one line per setting, named as in the configuration.
    pub fn differences(&self, now: &Compatibility) -> Vec<String> {
        let mut out = Vec::new();
        let mut differ = |key: String, then: String, now: String| {
            if then != now {
                out.push(format!("{key}: checkpoint {then}, configuration {now}"));
            }
        };
        differ(
            "dataflow.workers".into(),
            self.workers.to_string(),
            now.workers.to_string(),
        );
        differ(
            "cluster.processes (count)".into(),
            self.processes.to_string(),
            now.processes.to_string(),
        );
        // State directories swapped between processes: each holds another's share.
        differ(
            "cluster.process_index (the process the state directory belongs to)".into(),
            self.process.to_string(),
            now.process.to_string(),
        );
        differ(
            "routing version (this build places entities differently)".into(),
            self.routing.to_string(),
            now.routing.to_string(),
        );
        let pairs = |v: &[(String, Nanos)], k: &str| {
            v.iter()
                .find(|(n, _)| n == k)
                .map_or("none".into(), |(_, x)| format!("{} s", *x as f64 / 1e9))
        };
        for (name, _) in self.cadences.iter().chain(&now.cadences) {
            differ(
                format!("indicators.cadence_s.{name}"),
                pairs(&self.cadences, name),
                pairs(&now.cadences, name),
            );
        }
        for (name, _) in &now.horizons {
            differ(
                format!("streams.{name}.correction_horizon_days"),
                pairs(&self.horizons, name),
                pairs(&now.horizons, name),
            );
        }
        differ(
            "indicators.filing_lag_days".into(),
            format!("{} s", self.filing_lag as f64 / 1e9),
            format!("{} s", now.filing_lag as f64 / 1e9),
        );
        differ(
            "indicators.measurement".into(),
            self.measurement.clone(),
            now.measurement.clone(),
        );
        if let (Some(then), Some(now)) = (&self.verdict_measurement, &now.verdict_measurement) {
            differ(
                "indicators.verdict_measurement".into(),
                then.clone(),
                now.clone(),
            );
        }
        let topic = |v: &[(String, String)], k: &str| {
            v.iter()
                .find(|(n, _)| n == k)
                .map_or("none".into(), |(_, t)| t.clone())
        };
        for (name, _) in &now.topics {
            differ(
                format!("streams.{name}.topic"),
                topic(&self.topics, name),
                topic(&now.topics, name),
            );
        }
        out.dedup();
        out
    }
}

/// The coordinator's part of a checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CoordinatorState {
    /// Admission per stream: remembered ids, accepted range, watermark.
    pub admission: AdmissionState,
    /// Per stream: each partition's progress.
    pub partitions: [Vec<(i32, PartitionState)>; 3],
    /// Per stream: the watermark sent to the dataflow (never moves back).
    pub marks: [Option<Nanos>; 3],
    /// Per stream: each partition's next offset to read.
    pub offsets: [Vec<(i32, i64)>; 3],
}

impl CoordinatorState {
    /// Each partition's next offset as `stream/partition@offset`, comma-separated (no
    /// spaces: one `key=value` of a log line), for an operator comparing with lag tools.
    pub fn positions(&self) -> String {
        let mut out = Vec::new();
        for stream in Stream::ALL {
            for (partition, offset) in &self.offsets[stream.index()] {
                out.push(format!("{}/{partition}@{offset}", stream.as_str()));
            }
        }
        out.join(",")
    }
}

/// One checkpoint.
#[derive(Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Settings it depends on.
    pub compatibility: Compatibility,
    /// Increasing number, also in the file name.
    pub sequence: u64,
    /// When it was taken, milliseconds since the Unix epoch.
    pub taken_ms: u64,
    /// The coordinator's state.
    pub coordinator: CoordinatorState,
    /// The dataflow's state, one part per worker.
    pub workers: Vec<Vec<u8>>,
    /// The status board as points, as of the write (it may run ahead of the input point:
    /// those points are written again after a restore anyway).
    pub board: Vec<paceline_model::point::Point>,
}

/// Format 5, as it was written, and its migration: the settings lacked the verdict
/// measurement, recorded from format 6 on (unknown for a migrated file, so not compared).
pub mod v5 {
    use super::{CoordinatorState, Nanos};
    use serde::{Deserialize, Serialize};

    /// [`super::Compatibility`] of format 5.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[allow(missing_docs)]
    pub struct Compatibility {
        pub workers: usize,
        pub process: usize,
        pub routing: u32,
        pub processes: usize,
        pub cadences: Vec<(String, Nanos)>,
        pub horizons: Vec<(String, Nanos)>,
        pub filing_lag: Nanos,
        pub measurement: String,
        pub topics: Vec<(String, String)>,
    }

    /// [`super::Checkpoint`] of format 5.
    #[derive(Debug, Serialize, Deserialize)]
    #[allow(missing_docs)]
    pub struct Checkpoint {
        pub compatibility: Compatibility,
        pub sequence: u64,
        pub taken_ms: u64,
        pub coordinator: CoordinatorState,
        pub workers: Vec<Vec<u8>>,
        pub board: Vec<paceline_model::point::Point>,
    }

    impl From<Checkpoint> for super::Checkpoint {
        fn from(old: Checkpoint) -> Self {
            let c = old.compatibility;
            super::Checkpoint {
                compatibility: super::Compatibility {
                    workers: c.workers,
                    process: c.process,
                    routing: c.routing,
                    processes: c.processes,
                    cadences: c.cadences,
                    horizons: c.horizons,
                    filing_lag: c.filing_lag,
                    measurement: c.measurement,
                    topics: c.topics,
                    verdict_measurement: None,
                },
                sequence: old.sequence,
                taken_ms: old.taken_ms,
                coordinator: old.coordinator,
                workers: old.workers,
                board: old.board,
            }
        }
    }

    /// What a build of format 5 wrote for the same state (for the upgrade tests).
    impl From<super::Checkpoint> for Checkpoint {
        fn from(now: super::Checkpoint) -> Self {
            let c = now.compatibility;
            Checkpoint {
                compatibility: Compatibility {
                    workers: c.workers,
                    process: c.process,
                    routing: c.routing,
                    processes: c.processes,
                    cadences: c.cadences,
                    horizons: c.horizons,
                    filing_lag: c.filing_lag,
                    measurement: c.measurement,
                    topics: c.topics,
                },
                sequence: now.sequence,
                taken_ms: now.taken_ms,
                coordinator: now.coordinator,
                workers: now.workers,
                board: now.board,
            }
        }
    }
}

/// The checkpoint files of a state directory, locked for this process.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    /// Held for as long as any clone of the store lives.
    _lock: Arc<File>,
}

/// The lock file of a state directory.
const LOCK_FILE: &str = "paceline.lock";

/// What a cheap look at a checkpoint file's header says.
enum Header {
    /// This format or the one migrated, the length matching the file's size.
    Plausible,
    /// Another format version.
    OtherFormat(u32),
    /// Not a whole checkpoint (torn, garbled, foreign).
    Invalid,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Locks `dir` for this process (`paceline.lock`, holding the pid), or says who holds it.
fn lock_dir(dir: &Path) -> Result<File, CheckpointError> {
    let path = dir.join(LOCK_FILE);
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "pid unknown".to_string(),
                pid => format!("pid {pid}"),
            };
            return Err(CheckpointError::Locked {
                dir: dir.to_path_buf(),
                holder,
            });
        }
        Err(fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
    }
    file.set_len(0).map_err(io(&path))?;
    writeln!(file, "{}", std::process::id()).map_err(io(&path))?;
    Ok(file)
}

/// Writes, syncs and removes a probe file: a read-only or full directory is found now,
/// not at the first checkpoint.
fn prove_writable(dir: &Path) -> Result<(), CheckpointError> {
    let probe = dir.join(".paceline-write-probe");
    let result = File::create(&probe)
        .and_then(|mut f| {
            f.write_all(&[0u8; 64 * 1024])?;
            f.sync_all()
        })
        .and_then(|()| fs::remove_file(&probe));
    if result.is_err() {
        let _ = fs::remove_file(&probe);
    }
    result.map_err(io(dir))
}

/// A look at a file's header and size, without reading the payload.
fn header_of(path: &Path) -> Header {
    let mut head = [0u8; HEADER];
    let read = File::open(path).and_then(|mut f| {
        f.read_exact(&mut head)?;
        f.metadata()
    });
    let Ok(meta) = read else {
        return Header::Invalid;
    };
    if &head[..8] != MAGIC {
        return Header::Invalid;
    }
    let version = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if version != FORMAT_VERSION && version != MIGRATES_FROM {
        return Header::OtherFormat(version);
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&head[16..24]);
    if meta.len() == HEADER as u64 + u64::from_le_bytes(len) {
        Header::Plausible
    } else {
        Header::Invalid
    }
}

/// A checkpoint file's sequence number, from its name.
fn sequence_of(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix("checkpoint-")?
        .strip_suffix(".bin")?
        .parse()
        .ok()
}

impl Store {
    /// The store in `dir`, created if missing: locked for this process, proven writable,
    /// and cleared of temporary files a killed write left behind.
    pub fn open(dir: &Path) -> Result<Store, CheckpointError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let lock = lock_dir(dir)?;
        prove_writable(dir)?;
        let store = Store {
            dir: dir.to_path_buf(),
            _lock: Arc::new(lock),
        };
        store.remove_leftovers()?;
        Ok(store)
    }

    /// Removes `*.tmp` files: writes a kill interrupted before their rename.
    fn remove_leftovers(&self) -> Result<(), CheckpointError> {
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))?.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                tracing::info!(file = %path.display(), "removing a checkpoint write that never finished");
                fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        Ok(())
    }

    /// Refuses a directory holding a checkpoint of another format version (the newest
    /// file decides; older ones of this format behind it are its own history).
    pub fn check_format(&self) -> Result<(), CheckpointError> {
        for path in self.files()? {
            match header_of(&path) {
                Header::OtherFormat(found) => {
                    return Err(CheckpointError::OtherFormat {
                        path,
                        found,
                        reads: FORMAT_VERSION,
                    })
                }
                Header::Plausible => return Ok(()),
                // A torn newest file: the one before it decides.
                Header::Invalid => {}
            }
        }
        Ok(())
    }

    /// Removes the checkpoints numbered above `sequence`: a cluster resuming from it
    /// abandons them (its processes number the next ones from it, alike).
    pub fn discard_after(&self, sequence: u64) -> Result<usize, CheckpointError> {
        let newer: Vec<PathBuf> = self
            .files()?
            .into_iter()
            .filter(|p| sequence_of(p).is_some_and(|s| s > sequence))
            .collect();
        for p in &newer {
            fs::remove_file(p).map_err(io(p))?;
        }
        Ok(newer.len())
    }

    /// Checkpoint files, newest first.
    pub fn files(&self) -> Result<Vec<PathBuf>, CheckpointError> {
        let mut files: Vec<(u64, PathBuf)> = fs::read_dir(&self.dir)
            .map_err(io(&self.dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| sequence_of(&p).map(|s| (s, p)))
            .collect();
        files.sort_by_key(|f| std::cmp::Reverse(f.0));
        Ok(files.into_iter().map(|(_, p)| p).collect())
    }

    /// The sequence number for the next checkpoint.
    pub fn next_sequence(&self) -> Result<u64, CheckpointError> {
        Ok(self
            .files()?
            .first()
            .and_then(|p| sequence_of(p))
            .map_or(1, |s| s + 1))
    }

    /// Writes `checkpoint` atomically and durably, then removes all but the newest
    /// [`KEEP`]; returns the file's size in bytes.
    pub fn write(&self, checkpoint: &Checkpoint) -> Result<u64, CheckpointError> {
        let payload =
            bincode::serialize(checkpoint).map_err(|e| CheckpointError::Encode(e.to_string()))?;
        self.write_file(checkpoint.sequence, FORMAT_VERSION, &payload)
    }

    /// Writes `checkpoint` as a build of the previous format ([`MIGRATES_FROM`]) did: what
    /// an upgrade finds in the state directory (for the upgrade tests).
    pub fn write_previous_format(&self, checkpoint: Checkpoint) -> Result<u64, CheckpointError> {
        let sequence = checkpoint.sequence;
        let old: v5::Checkpoint = checkpoint.into();
        let payload =
            bincode::serialize(&old).map_err(|e| CheckpointError::Encode(e.to_string()))?;
        self.write_file(sequence, MIGRATES_FROM, &payload)
    }

    /// Writes one file of `version` holding `payload`: temporary file, fsync, rename, the
    /// directory fsynced; then the retention.
    fn write_file(
        &self,
        sequence: u64,
        version: u32,
        payload: &[u8],
    ) -> Result<u64, CheckpointError> {
        let path = self.dir.join(format!("checkpoint-{sequence:020}.bin"));
        let tmp = path.with_extension("tmp");
        {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            let mut header = Vec::with_capacity(HEADER);
            header.extend_from_slice(MAGIC);
            header.extend_from_slice(&version.to_le_bytes());
            header.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
            header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
            f.write_all(&header).map_err(io(&tmp))?;
            f.write_all(payload).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io(&path))?;
        // The rename is durable only once the directory is.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        self.retain(&path)?;
        Ok((HEADER + payload.len()) as u64)
    }

    /// Keeps `written` and the newest valid files up to [`KEEP`] in all; removes the
    /// rest, invalid files included (they never count among those kept).
    fn retain(&self, written: &Path) -> Result<(), CheckpointError> {
        let mut kept = 0;
        for file in self.files()? {
            let keep =
                kept < KEEP && (file == written || matches!(header_of(&file), Header::Plausible));
            if keep {
                kept += 1;
            } else {
                fs::remove_file(&file).map_err(io(&file))?;
            }
        }
        Ok(())
    }

    /// Reads and checks one checkpoint file.
    pub fn read(path: &Path) -> Result<Checkpoint, CheckpointError> {
        let invalid = |reason: String| CheckpointError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io(path))?;
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err(invalid("not a paceline checkpoint (bad header)".into()));
        }
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let version = word(8);
        if version != FORMAT_VERSION && version != MIGRATES_FROM {
            return Err(CheckpointError::OtherFormat {
                path: path.to_path_buf(),
                found: version,
                reads: FORMAT_VERSION,
            });
        }
        let crc = word(12);
        let mut len = [0u8; 8];
        len.copy_from_slice(&bytes[16..24]);
        let len = u64::from_le_bytes(len);
        let payload = &bytes[HEADER..];
        if payload.len() as u64 != len {
            return Err(invalid(format!(
                "truncated: {} payload bytes of {len}",
                payload.len()
            )));
        }
        if crc32fast::hash(payload) != crc {
            return Err(invalid("checksum mismatch (garbled)".into()));
        }
        let decoded = if version == MIGRATES_FROM {
            bincode::deserialize::<v5::Checkpoint>(payload).map(|old| {
                tracing::info!(file = %path.display(), from = MIGRATES_FROM, to = FORMAT_VERSION, "migrating a checkpoint of the previous format");
                old.into()
            })
        } else {
            bincode::deserialize(payload)
        };
        decoded.map_err(|e| invalid(format!("cannot decode: {e}")))
    }

    /// The newest valid checkpoint, with its file (invalid ones skipped, named).
    pub fn load_newest(&self) -> Result<Option<(PathBuf, Checkpoint)>, CheckpointError> {
        Ok(self.valid()?.next())
    }

    /// The valid checkpoints, newest first, each read when asked for; invalid ones are
    /// skipped with a warning naming them.
    pub fn valid(&self) -> Result<impl Iterator<Item = (PathBuf, Checkpoint)>, CheckpointError> {
        Ok(self
            .files()?
            .into_iter()
            .filter_map(|path| match Store::read(&path) {
                Ok(c) => Some((path, c)),
                Err(e) => {
                    tracing::warn!(
                        checkpoint = %path.display(),
                        error = %e,
                        "skipping an invalid checkpoint; trying the previous one"
                    );
                    None
                }
            }))
    }

    /// The checkpoint with this sequence, with its file.
    pub fn load(&self, sequence: u64) -> Result<(PathBuf, Checkpoint), CheckpointError> {
        let path = self.dir.join(format!("checkpoint-{sequence:020}.bin"));
        Store::read(&path).map(|c| (path, c))
    }

    /// Removes every checkpoint (a rebuild starts over from the topics' beginning).
    pub fn clear(&self) -> Result<usize, CheckpointError> {
        let files = self.files()?;
        for f in &files {
            fs::remove_file(f).map_err(io(f))?;
        }
        Ok(files.len())
    }
}

/// A snapshot on its way to disk: it is written once the database has acknowledged the
/// points emitted before it and the broker the dead letters queued before it.
pub struct Pending {
    /// The checkpoint, without the board (taken at write time).
    pub checkpoint: Checkpoint,
    /// What must be acknowledged before it counts.
    pub mark: Mark,
    /// How long the snapshot took.
    pub snapshot_time: Duration,
}

/// What the checkpoint writer works with.
pub struct Writer {
    /// The checkpoint files.
    pub store: Store,
    /// What has been acknowledged: the only judge of whether a checkpoint may count.
    pub progress: CommitProgress,
    /// Commits positions for lag tools (None: could not be created; logged).
    pub committer: Option<OffsetCommitter>,
    /// Topic per stream, for the commit.
    pub topics: [String; 3],
    /// The board, saved with each checkpoint.
    pub board: Arc<Board>,
    /// Metrics.
    pub metrics: ServeMetrics,
}

impl Writer {
    /// Writes checkpoints as they become durable, until the channel closes. An error
    /// (a dead letter that cannot be delivered, a state directory that cannot be written)
    /// is fatal: the service stops rather than run without checkpoints.
    pub fn run(self, input: Receiver<Pending>) -> Result<(), super::PipelineError> {
        for pending in input {
            let r = self.complete(pending);
            self.progress.set_writing(false);
            r?;
        }
        Ok(())
    }

    /// Waits until `pending` may count, then writes it.
    fn complete(&self, pending: Pending) -> Result<(), super::PipelineError> {
        let Pending {
            mut checkpoint,
            mark,
            snapshot_time,
        } = pending;
        loop {
            if self.progress.reached(mark)? {
                break;
            }
            if self.progress.abandoned() {
                tracing::info!(
                    sequence = checkpoint.sequence,
                    "checkpoint abandoned: its points or dead letters were never acknowledged"
                );
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let started = Instant::now();
        checkpoint.board = self.board.points();
        let size = self.store.write(&checkpoint)?;
        let duration = snapshot_time + started.elapsed();
        self.metrics
            .checkpoint_duration
            .observe(duration.as_secs_f64());
        self.metrics.checkpoint_size.set(size as i64);
        self.metrics
            .checkpoint_last_success
            .set(checkpoint.taken_ms as f64 / 1e3);
        tracing::info!(
            sequence = checkpoint.sequence,
            bytes = size,
            ms = duration.as_millis() as u64,
            "checkpoint written"
        );
        self.commit(&checkpoint.coordinator);
        Ok(())
    }

    /// Commits the checkpoint's positions to the consumer group; a failure is only logged.
    fn commit(&self, state: &CoordinatorState) {
        let Some(committer) = &self.committer else {
            return;
        };
        let offsets: Vec<(String, i32, i64)> = Stream::ALL
            .iter()
            .flat_map(|s| {
                let topic = self.topics[s.index()].clone();
                state.offsets[s.index()]
                    .iter()
                    .map(move |(p, o)| (topic.clone(), *p, *o))
            })
            .collect();
        if let Err(e) = committer.commit(&offsets) {
            tracing::warn!(error = %e, "cannot commit positions to the consumer group (lag tools only; checkpoints unaffected)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(sequence: u64, config: &Config) -> Checkpoint {
        Checkpoint {
            compatibility: Compatibility::of(config, 0, 1),
            sequence,
            taken_ms: 1,
            coordinator: CoordinatorState {
                offsets: [vec![(0, 40 + sequence as i64)], vec![], vec![(1, 7)]],
                ..Default::default()
            },
            workers: vec![vec![sequence as u8; 1000]],
            board: Vec::new(),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("paceline-ckpt-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn writes_keep_the_last_three_and_read_back() {
        let dir = temp_dir("keep");
        let store = Store::open(&dir).unwrap();
        let config = Config::default();
        for s in 1..=5 {
            assert_eq!(store.next_sequence().unwrap(), s);
            store.write(&checkpoint(s, &config)).unwrap();
        }
        let files = store.files().unwrap();
        assert_eq!(
            files
                .iter()
                .filter_map(|p| sequence_of(p))
                .collect::<Vec<_>>(),
            vec![5, 4, 3]
        );
        let (path, c) = store.load_newest().unwrap().unwrap();
        assert_eq!(path, files[0]);
        assert_eq!(c.sequence, 5);
        assert_eq!(c.coordinator.offsets[0], vec![(0, 45)]);
        assert_eq!(c.coordinator.positions(), "filings/0@45,scenarios/1@7");
        assert_eq!(c.workers, vec![vec![5u8; 1000]]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_or_garbled_newest_falls_back_to_the_previous() {
        let dir = temp_dir("torn");
        let store = Store::open(&dir).unwrap();
        let config = Config::default();
        for s in 1..=3 {
            store.write(&checkpoint(s, &config)).unwrap();
        }
        let newest = store.files().unwrap()[0].clone();
        let bytes = fs::read(&newest).unwrap();
        fs::write(&newest, &bytes[..bytes.len() - 10]).unwrap();
        assert!(
            matches!(Store::read(&newest), Err(CheckpointError::Invalid { reason, .. }) if reason.contains("truncated"))
        );
        assert_eq!(store.load_newest().unwrap().unwrap().1.sequence, 2);
        let mut garbled = bytes.clone();
        garbled[HEADER + 100] ^= 0x55;
        fs::write(&newest, &garbled).unwrap();
        assert!(
            matches!(Store::read(&newest), Err(CheckpointError::Invalid { reason, .. }) if reason.contains("checksum"))
        );
        assert_eq!(store.load_newest().unwrap().unwrap().1.sequence, 2);
        fs::write(&newest, b"hello").unwrap();
        assert_eq!(store.load_newest().unwrap().unwrap().1.sequence, 2);
        assert_eq!(store.clear().unwrap(), 3);
        assert!(store.load_newest().unwrap().is_none());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn invalid_files_never_count_among_those_kept_and_numbers_go_on_above_them() {
        let dir = temp_dir("retain");
        let store = Store::open(&dir).unwrap();
        let config = Config::default();
        for s in 1..=3 {
            store.write(&checkpoint(s, &config)).unwrap();
        }
        let newest = store.files().unwrap()[0].clone();
        let bytes = fs::read(&newest).unwrap();
        fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
        assert_eq!(store.next_sequence().unwrap(), 4, "above the torn file");
        for s in 4..=5 {
            store.write(&checkpoint(s, &config)).unwrap();
        }
        let kept: Vec<u64> = store
            .files()
            .unwrap()
            .iter()
            .filter_map(|p| sequence_of(p))
            .collect();
        assert_eq!(
            kept,
            vec![5, 4, 2],
            "the torn 3 is not among the three kept"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_previous_format_is_migrated_and_the_next_written_in_this_one() {
        let dir = temp_dir("migrate");
        let store = Store::open(&dir).unwrap();
        let config = Config::default();
        // What a format-5 build wrote: the same state, without the verdict measurement.
        let now = checkpoint(7, &config);
        store.write_previous_format(checkpoint(7, &config)).unwrap();
        store.check_format().unwrap();

        let (_, read) = store.load_newest().unwrap().unwrap();
        assert_eq!(read.sequence, 7);
        assert_eq!(read.workers, now.workers);
        assert_eq!(read.coordinator.offsets, now.coordinator.offsets);
        assert_eq!(read.compatibility.verdict_measurement, None);
        // Not recorded, so not compared; every other setting still is.
        assert!(read
            .compatibility
            .differences(&now.compatibility)
            .is_empty());
        let mut other = config.clone();
        other.indicators.filing_lag_days += 1;
        assert_eq!(
            read.compatibility
                .differences(&Compatibility::of(&other, 0, 1))
                .len(),
            1
        );

        // The next checkpoint continues the numbering, in this format; the migrated one
        // stays among those kept.
        assert_eq!(store.next_sequence().unwrap(), 8);
        store.write(&checkpoint(8, &config)).unwrap();
        let versions: Vec<u32> = store
            .files()
            .unwrap()
            .iter()
            .map(|f| {
                let b = fs::read(f).unwrap();
                u32::from_le_bytes([b[8], b[9], b[10], b[11]])
            })
            .collect();
        assert_eq!(versions, vec![FORMAT_VERSION, MIGRATES_FROM]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_changed_verdict_measurement_is_refused() {
        let config = Config::default();
        let then = Compatibility::of(&config, 0, 1);
        let mut other = config.clone();
        other.indicators.verdict_measurement = "verdicts".into();
        let differences = then.differences(&Compatibility::of(&other, 0, 1));
        assert_eq!(
            differences,
            vec!["indicators.verdict_measurement: checkpoint plan_verdict, configuration verdicts"]
        );
    }

    #[test]
    fn another_format_is_refused_by_name_never_skipped() {
        let dir = temp_dir("format");
        let store = Store::open(&dir).unwrap();
        let config = Config::default();
        for s in 1..=2 {
            store.write(&checkpoint(s, &config)).unwrap();
        }
        let files = store.files().unwrap();
        // An older file of another format behind a current newest: its own history.
        let mut older = fs::read(&files[1]).unwrap();
        older[8..12].copy_from_slice(&4u32.to_le_bytes());
        fs::write(&files[1], &older).unwrap();
        store.check_format().unwrap();
        // The newest of another format: refused, both versions named.
        let mut newest = fs::read(&files[0]).unwrap();
        newest[8..12].copy_from_slice(&4u32.to_le_bytes());
        fs::write(&files[0], &newest).unwrap();
        let e = store.check_format().unwrap_err();
        assert!(
            matches!(
                e,
                CheckpointError::OtherFormat {
                    found: 4,
                    reads: FORMAT_VERSION,
                    ..
                }
            ),
            "{e}"
        );
        let text = e.to_string();
        assert!(
            text.contains("format 4") && text.contains("--rebuild"),
            "{text}"
        );
        assert!(matches!(
            Store::read(&files[0]),
            Err(CheckpointError::OtherFormat { found: 4, .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_directory_is_one_process_s_and_leftovers_go() {
        let dir = temp_dir("lock");
        fs::create_dir_all(&dir).unwrap();
        let leftover = dir.join("checkpoint-00000000000000000007.tmp");
        fs::write(&leftover, b"half a checkpoint").unwrap();
        let store = Store::open(&dir).unwrap();
        assert!(!leftover.exists(), "a killed write's file is removed");
        let e = Store::open(&dir).unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(e, CheckpointError::Locked { .. })
                && text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(store);
        Store::open(&dir).expect("free again once the holder is gone");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn differences_name_the_settings() {
        let a = Config::default();
        let mut b = Config::default();
        b.dataflow.workers = a.dataflow.workers + 3;
        b.streams.telemetry.topic = "other".into();
        let d = Compatibility::of(&a, 0, 1).differences(&Compatibility::of(&b, 0, 1));
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].starts_with("dataflow.workers: checkpoint"), "{d:?}");
        assert!(
            d[1].starts_with("streams.telemetry.topic: checkpoint"),
            "{d:?}"
        );
        assert!(Compatibility::of(&a, 0, 1)
            .differences(&Compatibility::of(&a, 0, 1))
            .is_empty());
    }

    /// Every setting the state depends on, changed alone, is a difference named by its
    /// key: a checkpoint taken under it is refused at start.
    #[test]
    fn each_setting_the_state_depends_on_is_named() {
        let a = Config::default();
        // A setting's key and how to change it.
        type Change = (&'static str, fn(&mut Config));
        let changes: [Change; 7] = [
            ("indicators.cadence_s.quasi_unicorns", |c| {
                c.indicators.cadence_s.insert("quasi_unicorns".into(), 3600);
            }),
            ("streams.filings.correction_horizon_days", |c| {
                c.streams.filings.correction_horizon_days += 1;
            }),
            ("indicators.filing_lag_days", |c| {
                c.indicators.filing_lag_days += 1;
            }),
            ("indicators.measurement", |c| {
                c.indicators.measurement = "elsewhere".into();
            }),
            ("indicators.verdict_measurement", |c| {
                c.indicators.verdict_measurement = "verdicts_elsewhere".into();
            }),
            ("streams.scenarios.topic", |c| {
                c.streams.scenarios.topic = "another".into();
            }),
            ("dataflow.workers", |c| c.dataflow.workers += 1),
        ];
        for (key, change) in changes {
            let mut b = Config::default();
            change(&mut b);
            let d = Compatibility::of(&a, 0, 1).differences(&Compatibility::of(&b, 0, 1));
            assert_eq!(d.len(), 1, "{key}: {d:?}");
            assert!(
                d[0].starts_with(&format!("{key}: checkpoint ")),
                "{key}: {d:?}"
            );
        }
    }
}
