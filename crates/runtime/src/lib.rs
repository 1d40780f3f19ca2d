//! The runtime: wires the stages (ingest → decode → dataflow → sinks) into the modes the
//! binary runs. The stage crates never call each other; this crate is where they meet.
//!
//! - [`replay`]: JSON Lines files in, a line-protocol file and a dead-letter file out.
//! - [`serve`]: Kafka in, InfluxDB out, metrics and HTTP endpoints, until shutdown.

pub mod replay;
pub mod serve;

pub use replay::{replay, ReplayError, ReplayOptions, ReplaySummary};
