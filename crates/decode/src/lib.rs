//! The decode stage: raw message bytes in, typed [`Event`](paceline_model::Event)s or named
//! rejections out.
//!
//! Place in the flow: ingest (Kafka or files) → **decode** → dataflow → sinks. [`decode`]
//! checks an event against docs/events.md in the spec's order of reasons, enforcing size and
//! nesting limits before any parsing; [`event_time`] is the one owner of event-time policy:
//! [`Admission`] applies the stream-level rules that need state (`too_late` against the
//! stream's watermark, duplicates by `event_id`), and [`WatermarkRule`] says what a
//! stream's watermark is given its partitions (active, idle), for replay and serve alike.
//! Nothing here panics on any input.

mod event_time;
mod flat;
mod json;
mod reason;
mod validate;

pub use event_time::{
    Admission, AdmissionState, GateState, PartitionState, Verdict, WatermarkRule,
};
pub use json::{parse as parse_json, JsonError, Value};
pub use reason::{Reason, Rejection};
pub use validate::{
    decode, decode_at, latest_occurred_at, prescan, DEFAULT_MAX_FUTURE, MAX_AMOUNT_CNY, MAX_DEPTH,
    MAX_EVENT_BYTES, MAX_INTERVAL_S, MAX_STRING_BYTES, YEARS,
};
