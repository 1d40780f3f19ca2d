//! Fuzz target: decoding any bytes, with and without a topic's stream, never panics, and a
//! decoded event always belongs to the stream it was decoded for.
//! Run with `cargo fuzz run decode` from `fuzz/` (needs cargo-fuzz and a nightly toolchain).
#![no_main]

use libfuzzer_sys::fuzz_target;
use paceline_model::Stream;

fuzz_target!(|data: &[u8]| {
    let _ = paceline_decode::decode(data, None);
    for s in Stream::ALL {
        if let Ok(e) = paceline_decode::decode(data, Some(s)) {
            assert_eq!(e.body.stream(), s);
        }
    }
});
