//! The JSON layer decides as serde_json does: on many mutations of valid events (bytes
//! flipped, inserted, deleted, lines cut), text serde_json parses is parsed here too
//! (unless it repeats a key, which docs/events.md refuses, or holds a number too large for a
//! double, which serde_json refuses and validation rejects as `out_of_range`), and text
//! serde_json refuses is refused here. The fuzz target (`fuzz/`) checks the same on
//! arbitrary bytes.

use paceline_decode::{decode, parse_json, prescan, Reason};

const SEEDS: &str = include_str!("../../../tests/data/spec-examples.jsonl");

/// Whether our parser and serde_json agree on `data`; panics with the case otherwise.
fn agree(data: &[u8]) {
    if prescan(data).is_err() {
        return;
    }
    let theirs = serde_json::from_slice::<serde_json::Value>(data);
    let ours = std::str::from_utf8(data).ok().map(parse_json);
    match (ours, theirs) {
        (Some(Ok(_)), Ok(_)) | (None, Err(_)) | (Some(Err(_)), Err(_)) => {}
        (Some(Err(e)), Ok(_)) => assert!(
            e.to_string().contains("repeated key"),
            "serde_json accepts what we refuse ({e}): {:?}",
            String::from_utf8_lossy(data)
        ),
        (Some(Ok(_)), Err(e)) => assert!(
            e.to_string().contains("number out of range"),
            "we accept what serde_json refuses ({e}): {:?}",
            String::from_utf8_lossy(data)
        ),
        (None, Ok(_)) => panic!("serde_json accepts bytes that are not UTF-8"),
    }
    // The decoder's own decision follows: refused JSON is `invalid_json` (or an earlier
    // reason), never an event.
    if serde_json::from_slice::<serde_json::Value>(data).is_err() {
        if let Ok(e) = decode(data, None) {
            panic!("decoded {e:?} from text serde_json refuses");
        }
    }
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn the_json_layer_decides_as_serde_json() {
    let seeds: Vec<&[u8]> = SEEDS.lines().map(str::as_bytes).collect();
    let alphabet = b"{}[]\":,\\0123456789.eE+-tfnul \x00\xff\xc3\xa9u";
    let mut rng = Lcg(7);
    let mut refused = 0;
    for _ in 0..40_000 {
        let mut line = seeds[rng.below(seeds.len())].to_vec();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(line.len() + 1);
            match rng.below(4) {
                0 if at < line.len() => line[at] = alphabet[rng.below(alphabet.len())],
                1 => line.insert(at, alphabet[rng.below(alphabet.len())]),
                2 if at < line.len() => {
                    line.remove(at);
                }
                _ => line.truncate(at),
            }
        }
        agree(&line);
        if decode(&line, None).is_err_and(|r| r.reason == Reason::InvalidJson) {
            refused += 1;
        }
    }
    assert!(
        refused > 5_000,
        "the mutations reach invalid JSON: {refused}"
    );
    // The known differences, explicitly.
    agree(br#"{"a":1,"a":2}"#);
    agree(br#"{"a":1e400}"#);
    assert_eq!(
        decode(br#"{"event_id":"e","event_id":"f"}"#, None)
            .map_err(|r| r.reason)
            .err(),
        Some(Reason::InvalidJson)
    );
}
