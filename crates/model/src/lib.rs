//! Shared types of paceline, the one crate every stage depends on.
//!
//! Data flows one way through paceline: ingest → decode → dataflow → sinks. The stage crates
//! (`paceline-decode`, `paceline-dataflow`, `paceline-sink`) do not depend on each other; they
//! meet here: the typed [`Event`], event time and tick arithmetic ([`time`]), the indicator
//! catalogue and series keys ([`catalogue`]), the output [`Point`](point::Point) and the
//! configuration ([`config`]).

pub mod catalogue;
pub mod clock;
pub mod config;
pub mod event;
pub mod failpoint;
pub mod names;
pub mod point;
pub mod secret;
pub mod time;

pub use catalogue::{Indicator, SeriesKey};
pub use event::{Body, Event, EventType, SmolStr, Stream};
pub use time::Nanos;
