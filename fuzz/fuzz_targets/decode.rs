//! Fuzz target: decoding any bytes, with and without a topic's stream, never panics; a
//! decoded event always belongs to the stream it was decoded for; and the JSON layer
//! decides as serde_json does (what serde_json parses is parsed, unless it repeats a key
//! or holds a number too large for a double; what it refuses is refused and never decoded
//! into an event). Run with `cargo fuzz run decode` from `fuzz/` (needs cargo-fuzz and a
//! nightly toolchain); `crates/decode/tests/json_vs_serde.rs` checks the same on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paceline_model::Stream;

fuzz_target!(|data: &[u8]| {
    let decoded = paceline_decode::decode(data, None);
    for s in Stream::ALL {
        if let Ok(e) = paceline_decode::decode(data, Some(s)) {
            assert_eq!(e.body.stream(), s);
        }
    }
    if paceline_decode::prescan(data).is_err() {
        return;
    }
    let theirs = serde_json::from_slice::<serde_json::Value>(data);
    let ours = std::str::from_utf8(data).ok().map(paceline_decode::parse_json);
    match (&ours, &theirs) {
        (Some(Err(e)), Ok(_)) => assert!(e.to_string().contains("repeated key"), "{e}"),
        (Some(Ok(_)), Err(e)) => assert!(e.to_string().contains("number out of range"), "{e}"),
        (None, Ok(_)) => panic!("serde_json accepted bytes that are not UTF-8"),
        _ => {}
    }
    if theirs.is_err() {
        assert!(decoded.is_err(), "an event from text serde_json refuses");
    }
});
