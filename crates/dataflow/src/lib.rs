//! The dataflow stage: accepted events in, indicator points with plan pace out.
//!
//! Place in the flow: ingest → decode → **dataflow** → sinks. A timely dataflow runs on
//! any number of worker threads: events are exchanged by entity to the entity operators
//! ([`entities`]), which send deltas of slot levels ([`intervals`]); deltas are exchanged by
//! indicator group to the series operators ([`series`]), which close ticks as the streams'
//! watermarks pass them and emit points, re-emitting corrected points when late or amended
//! events change ticks already written. Sums are exact ([`exact`]), so the output does not
//! depend on arrival order or worker count.
//!
//! Timely time is an input *epoch*: sources advance it every few thousand events and
//! report each stream's watermark at every epoch ([`WatermarkReport`]).

pub mod cluster;
pub mod entities;
pub mod exact;
pub mod intervals;
pub mod pace;
mod runner;
pub mod series;
mod ticks;

pub use runner::{
    stable_hash, writer_of, DataflowSettings, Epoch, PointsOut, Recycle, Runner, RunnerError,
    RunnerStats, WatermarkReport, ROUTING_VERSION,
};
