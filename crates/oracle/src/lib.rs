//! Test oracle, kept apart from the dataflow: a brute-force model of docs/indicators.md that
//! recomputes every series at every tick from all events, slowly and obviously ([`model`]),
//! a line-protocol reader ([`lp`]) and the equivalence check of docs/outputs.md ([`equiv`]).
//! It shares only the event types and the configuration with the code under test.

pub mod equiv;
pub mod lp;
pub mod model;
