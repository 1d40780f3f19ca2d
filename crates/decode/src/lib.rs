//! The decode stage: raw message bytes in, typed [`Event`](paceline_model::Event)s or named
//! rejections out.
//!
//! Place in the flow: ingest (Kafka or files) → **decode** → dataflow → sinks. [`decode`]
//! checks an event against docs/events.md in the spec's order of reasons, enforcing size and
//! nesting limits before any parsing; [`Admission`] then applies the stream-level rules
//! that need state: `too_late` against the stream's watermark and duplicates by `event_id`.
//! Nothing here panics on any input.

mod admit;
mod json;
mod reason;
mod validate;

pub use admit::{Admission, AdmissionState, GateState, Verdict};
pub use json::{parse as parse_json, JsonError, Value};
pub use reason::{Reason, Rejection};
pub use validate::{
    decode, decode_at, latest_occurred_at, prescan, DEFAULT_MAX_FUTURE, MAX_AMOUNT_CNY, MAX_DEPTH,
    MAX_EVENT_BYTES, MAX_INTERVAL_S, MAX_STRING_BYTES, YEARS,
};
