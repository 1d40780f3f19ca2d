//! The runtime: wires the stages (ingest → decode → dataflow → sinks) into the modes the
//! binary runs. The stage crates never call each other; this crate is where they meet.
//!
//! - [`replay`]: JSON Lines files in, a line-protocol file and a dead-letter file out.
//! - [`demo`]: the generated district through the same pipeline, a table and the status page.
//! - [`serve`]: Kafka in, InfluxDB out, metrics and HTTP endpoints, until shutdown.
//! - [`produce`]: JSON Lines events out to the three topics, to feed `serve`.
//!
//! What people see of a run, whatever the mode, comes from one [`board::Board`]: the
//! status page ([`page`]), the planned-indicator table ([`table`]) and the JSON API.

pub(crate) mod admit;
pub(crate) mod board;
pub mod build;
pub mod dashboards;
pub(crate) mod decoders;
pub mod demo;
pub mod healthcheck;
pub(crate) mod page;
pub mod present;
pub mod produce;
pub(crate) mod progress;
pub mod replay;
pub mod report;
pub mod serve;
pub mod settings;
pub(crate) mod table;

pub use replay::{replay, ReplayError, ReplayOptions, ReplaySummary};
