//! Unit tests of validation: the spec's examples, every reason, and the order of reasons.

use super::*;

const EXAMPLES: &str = include_str!("../../../../tests/data/spec-examples.jsonl");

fn reason(line: &str) -> Option<Reason> {
    decode(line.as_bytes(), None).err().map(|r| r.reason)
}

const VALID: &str = r#"{"event_id":"e1","type":"enterprise.financials","occurred_at":"2023-04-20T08:00:00+08:00","enterprise_id":"E1","period":"2023-Q1","revenue_cny":1,"added_value_cny":-2.5,"revision":0}"#;

fn with(field: &str, value: &str) -> String {
    let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(VALID).unwrap();
    if value == "<absent>" {
        v.remove(field);
        return serde_json::to_string(&v).unwrap();
    }
    v.insert(field.into(), serde_json::Value::Null);
    serde_json::to_string(&v).unwrap().replace(
        &format!("\"{field}\":null"),
        &format!("\"{field}\":{value}"),
    )
}

/// Every line of `lines` taken `step` apart, with each of its bytes replaced in turn by each
/// of `replacements`, handed to `f`.
fn for_each_changed(lines: &[String], step: usize, replacements: &[u8], mut f: impl FnMut(&[u8])) {
    for line in lines.iter().step_by(step) {
        for at in 0..line.len() {
            for &c in replacements {
                let mut changed = line.as_bytes().to_vec();
                changed[at] = c;
                f(&changed);
            }
        }
    }
}

#[test]
fn spec_examples_decode_as_documented() {
    let lines: Vec<&str> = EXAMPLES.lines().collect();
    for (i, line) in lines.iter().enumerate().take(13) {
        let e = decode(line.as_bytes(), None).unwrap_or_else(|r| panic!("line {}: {r}", i + 1));
        assert!(!e.id.is_empty());
    }
    let expected = [
        (14, Reason::OutOfRange),
        (15, Reason::BadTimestamp),
        (16, Reason::WrongType),
        (17, Reason::UnknownValue),
        (18, Reason::UnknownType),
        (19, Reason::MissingField),
        (20, Reason::InvalidJson),
        (21, Reason::UnknownValue),
    ];
    for (n, r) in expected {
        assert_eq!(reason(lines[n - 1]), Some(r), "line {n}");
    }
    // Line 7: nine fractional digits, just before 2025-01-01T00:00+08:00.
    let e7 = decode(lines[6].as_bytes(), None).unwrap();
    assert_eq!(
        e7.at,
        parse_rfc3339("2025-01-01T00:00:00+08:00").unwrap() - 1
    );
}

#[test]
fn decodes_fields() {
    let e = decode(VALID.as_bytes(), Some(Stream::Filings)).unwrap();
    assert_eq!(
        e.body,
        Body::Financials {
            enterprise: "E1".into(),
            period: 2023 * 4,
            revenue_cny: 1.0,
            added_value_cny: -2.5,
            revision: 0
        }
    );
}

#[test]
fn every_reason_is_reachable() {
    assert_eq!(
        reason(&format!("{{\"x\":\"{}\"}}", "a".repeat(70_000))),
        Some(Reason::TooLarge)
    );
    assert_eq!(
        reason(&format!("{}{}", "[".repeat(33), "]".repeat(33))),
        Some(Reason::TooDeep)
    );
    assert_eq!(
        reason(&"[".repeat(40)),
        Some(Reason::TooDeep),
        "depth counts before parsing"
    );
    assert_eq!(
        reason(&format!("{}{}", "[".repeat(32), "]".repeat(32))),
        Some(Reason::InvalidJson)
    );
    assert_eq!(
        reason("{\"a\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"}"),
        Some(Reason::UnknownType)
    );
    assert_eq!(
        decode(b"\xff\xfe{}", None).unwrap_err().reason,
        Reason::InvalidJson
    );
    assert_eq!(reason("[1]"), Some(Reason::InvalidJson));
    assert_eq!(reason("{}"), Some(Reason::UnknownType));
    assert_eq!(reason("{\"type\":5}"), Some(Reason::UnknownType));
    let wrong = decode(VALID.as_bytes(), Some(Stream::Telemetry)).unwrap_err();
    assert_eq!(
        (wrong.reason, wrong.stream),
        (Reason::WrongStream, Some(Stream::Telemetry))
    );
    assert_eq!(
        reason(&with("revision", "<absent>")),
        Some(Reason::MissingField)
    );
    assert_eq!(
        reason(&with("revision", "null")),
        Some(Reason::MissingField)
    );
    assert_eq!(
        reason(&with("event_id", "null")),
        Some(Reason::MissingField)
    );
    assert_eq!(reason(&with("revision", "\"5\"")), Some(Reason::WrongType));
    assert_eq!(reason(&with("revision", "1e2")), Some(Reason::WrongType));
    assert_eq!(
        reason(&with("revenue_cny", "\"1\"")),
        Some(Reason::WrongType)
    );
    assert_eq!(reason(&with("source", "7")), Some(Reason::WrongType));
    assert_eq!(reason(&with("event_id", "7")), Some(Reason::WrongType));
    assert_eq!(
        reason(&with("occurred_at", "\"2023-04-20T08:00:60Z\"")),
        Some(Reason::BadTimestamp)
    );
    assert_eq!(
        reason(&with("period", "\"2023-Q0\"")),
        Some(Reason::UnknownValue)
    );
    assert_eq!(
        reason(&with("period", "\"23-Q1\"")),
        Some(Reason::UnknownValue)
    );
    assert_eq!(reason(&with("revision", "-1")), Some(Reason::OutOfRange));
    assert_eq!(
        reason(&with("revision", "9007199254740992")),
        Some(Reason::OutOfRange)
    );
    assert_eq!(reason(&with("revision", "9007199254740991")), None);
    assert_eq!(reason(&with("revision", "-0")), None);
    assert_eq!(
        reason(&with("revenue_cny", "-0.01")),
        Some(Reason::OutOfRange)
    );
    assert_eq!(
        reason(&with("revenue_cny", "1e999")),
        Some(Reason::OutOfRange)
    );
    assert_eq!(
        reason(&with("added_value_cny", "-1e308")),
        Some(Reason::OutOfRange)
    );
    assert_eq!(reason(&with("event_id", "\"\"")), Some(Reason::OutOfRange));
    assert_eq!(
        reason(&with("event_id", &format!("\"{}\"", "i".repeat(129)))),
        Some(Reason::OutOfRange)
    );
    assert_eq!(
        reason(&with("event_id", &format!("\"{}\"", "i".repeat(128)))),
        None
    );
    assert_eq!(
        reason(&with(
            "extra",
            &format!("{{\"deep\":[\"{}\"]}}", "s".repeat(4097))
        )),
        Some(Reason::OutOfRange)
    );
    assert_eq!(
        reason(&with("extra", &format!("\"{}\"", "s".repeat(4096)))),
        None
    );
    assert_eq!(
        reason(&with("occurred_at", "\"1500-01-01T00:00:00Z\"")),
        Some(Reason::OutOfRange)
    );
    assert_eq!(
        reason(&with("source", "null")),
        None,
        "a null optional field is absent"
    );
    assert_eq!(
        reason(&with("extra", "{\"a\":[1,2,{\"b\":null}]}")),
        None,
        "unknown fields are ignored"
    );
    let hb = r#"{"event_id":"h","type":"platform.heartbeat","occurred_at":"2024-01-01T00:00:00Z","platform_id":"p","platform_kind":"network_communication","status":"up","interval_s":0}"#;
    assert_eq!(
        reason(hb),
        Some(Reason::OutOfRange),
        "interval_s must be > 0"
    );
}

#[test]
fn reasons_apply_in_the_spec_order() {
    // Missing wins over a wrong type elsewhere; wrong type over a bad timestamp; bad
    // timestamp over an unknown value; unknown value over out of range.
    let missing_and_wrong =
        with("revision", "<absent>").replace("\"revenue_cny\":1", "\"revenue_cny\":\"x\"");
    assert_eq!(reason(&missing_and_wrong), Some(Reason::MissingField));
    let wrong_and_bad_time = with("revision", "1.5").replace("08:00:00+08:00", "08:00:00");
    assert_eq!(reason(&wrong_and_bad_time), Some(Reason::WrongType));
    let bad_time_and_value = with("period", "\"2023-Q9\"").replace("08:00:00+08:00", "08:00:00");
    assert_eq!(reason(&bad_time_and_value), Some(Reason::BadTimestamp));
    let value_and_range =
        with("period", "\"2023-Q9\"").replace("\"revenue_cny\":1", "\"revenue_cny\":-1");
    assert_eq!(reason(&value_and_range), Some(Reason::UnknownValue));
}

#[test]
fn hostile_inputs_never_panic() {
    let cases: Vec<Vec<u8>> = vec![
        vec![0xff; 100],
        vec![b'{'; 10_000],
        format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
        vec![b'"'; 5],
        b"{\"type\":\"enterprise.valuation\",\"valuation_cny\":1e999999999}".to_vec(),
        b"{\"event_id\":\"\\ud800\"}".to_vec(),
        b"".to_vec(),
        b"null".to_vec(),
        vec![b'a'; 10 * 1024 * 1024],
        b"{\"type\":\"enterprise.valuation\",\"occurred_at\":\"\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\"}".to_vec(),
    ];
    for c in cases {
        assert!(decode(&c, None).is_err());
    }
}

#[test]
fn fuzz_corpus_never_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/decode");
    let mut n = 0;
    let mut accepted = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        if decode(&bytes, None).is_ok() {
            accepted += 1;
        }
        for s in Stream::ALL {
            if let Ok(e) = decode(&bytes, Some(s)) {
                assert_eq!(e.body.stream(), s);
            }
        }
        n += 1;
    }
    assert!(n >= 20, "corpus has {n} files");
    assert!(accepted >= 13, "the valid examples decode: {accepted}");
}

/// Every limit of docs/events.md's "Limits" at its edge: the last valid value accepted, the
/// next one refused `out_of_range`.
#[test]
fn limits_at_their_edges() {
    let heartbeat = |interval: &str| {
        format!(
            r#"{{"event_id":"h","type":"platform.heartbeat","occurred_at":"2024-01-01T00:00:00Z","platform_id":"P","platform_kind":"network_communication","status":"up","interval_s":{interval}}}"#
        )
    };
    let usage = |n: &str, value: &str| {
        format!(
            r#"{{"event_id":"u","type":"scenario.usage","occurred_at":"2024-01-01T00:00:00Z","scenario_id":"S","active_users":{n},"transactions":0,"value_cny":{value}}}"#
        )
    };
    let valuation = |v: &str| {
        format!(
            r#"{{"event_id":"v","type":"enterprise.valuation","occurred_at":"2024-01-01T00:00:00Z","enterprise_id":"E","valuation_cny":{v}}}"#
        )
    };
    let cases: Vec<(String, Option<Reason>)> = vec![
        (with("revenue_cny", "1e15"), None),
        (
            with("revenue_cny", "1000000000000000.2"),
            Some(Reason::OutOfRange),
        ),
        (with("revenue_cny", "1e308"), Some(Reason::OutOfRange)),
        (with("added_value_cny", "-1e15"), None),
        (with("added_value_cny", "1e15"), None),
        (
            with("added_value_cny", "-1.0000000000000002e15"),
            Some(Reason::OutOfRange),
        ),
        (
            with("added_value_cny", "1.0000000000000002e15"),
            Some(Reason::OutOfRange),
        ),
        (valuation("1e15"), None),
        (valuation("1.0000000000000002e15"), Some(Reason::OutOfRange)),
        (usage("0", "1e15"), None),
        (
            usage("0", "1.0000000000000002e15"),
            Some(Reason::OutOfRange),
        ),
        (usage("9007199254740991", "0"), None),
        (usage("9007199254740992", "0"), Some(Reason::OutOfRange)),
        (heartbeat("86400"), None),
        (heartbeat("86400.00000000001"), Some(Reason::OutOfRange)),
        (heartbeat("0"), Some(Reason::OutOfRange)),
        (with("period", "\"1970-Q1\""), None),
        (with("period", "\"1969-Q4\""), Some(Reason::OutOfRange)),
        (with("period", "\"2199-Q4\""), None),
        (with("period", "\"2200-Q1\""), Some(Reason::OutOfRange)),
        (with("period", "\"9999-Q4\""), Some(Reason::OutOfRange)),
        (with("occurred_at", "\"1970-01-01T00:00:00Z\""), None),
        (
            with("occurred_at", "\"1969-12-31T23:59:59.999999999Z\""),
            Some(Reason::OutOfRange),
        ),
        (
            with("occurred_at", "\"1970-01-01T07:59:59+08:00\""),
            Some(Reason::OutOfRange),
        ),
    ];
    for (line, expected) in &cases {
        assert_eq!(reason(line), *expected, "{line}");
    }
    // The future: up to `max_future` ahead of the clock (here a fixed "latest"), and never
    // 2200 or later, whatever the clock says.
    let at = |ts: &str| with("occurred_at", &format!("\"{ts}\""));
    let latest = parse_rfc3339("2030-06-01T00:00:00Z").unwrap();
    let decide = |line: &str, latest| {
        decode_at(line.as_bytes(), None, latest)
            .err()
            .map(|r| r.reason)
    };
    assert_eq!(decide(&at("2030-06-01T00:00:00Z"), latest), None);
    assert_eq!(
        decide(&at("2030-06-01T00:00:00.000000001Z"), latest),
        Some(Reason::OutOfRange)
    );
    assert_eq!(
        decide(&at("2199-12-31T23:59:59.999999999Z"), Nanos::MAX),
        None
    );
    assert_eq!(
        decide(&at("2200-01-01T00:00:00Z"), Nanos::MAX),
        Some(Reason::OutOfRange)
    );
    // With the real clock and the default day ahead.
    let tomorrow = latest_occurred_at(DEFAULT_MAX_FUTURE);
    assert_eq!(decide(&at("2026-01-01T00:00:00Z"), tomorrow), None);
    assert_eq!(
        reason(&at("2199-01-01T00:00:00Z")),
        Some(Reason::OutOfRange),
        "far in the future"
    );
}

/// The one-pass reading of flat lines changes no outcome: every generated line (the
/// generator mixes in invalid ones), every single-byte change of a sample of them, and every
/// example of the spec decode to the same event or the same rejection, detail included, as
/// through the general parser.
#[test]
fn the_flat_pass_decodes_as_the_general_parser() {
    let latest = parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
    let same = |line: &[u8], topic: Option<Stream>| {
        assert_eq!(
            decode_at(line, topic, latest),
            decode_general(line, topic, latest),
            "{}",
            String::from_utf8_lossy(line)
        );
    };
    let lines: Vec<String> = paceline_generate::generate(7, 0.01)
        .into_iter()
        .chain(EXAMPLES.lines().map(str::to_string))
        .collect();
    let mut flat_read = 0;
    let mut flat = flat::NO_MEMBERS;
    for line in &lines {
        same(line.as_bytes(), None);
        same(line.as_bytes(), Some(Stream::Filings));
        flat_read += usize::from(flat::scan(line, &mut flat).is_some());
    }
    // The test means something only if most lines take the one-pass path.
    assert!(
        flat_read * 10 > lines.len() * 9,
        "{flat_read} of {}",
        lines.len()
    );
    for_each_changed(&lines, 301, b"\"\\{}[],:-.e0 9tn\x01\xc3", |changed| {
        same(changed, None)
    });
}

/// `same_key` answers as `==` does, for every length around the word sizes and a change
/// at every position, and for keys of different lengths that share a prefix.
#[test]
fn same_key_is_string_equality() {
    for len in 0..24 {
        let a: String = (0..len)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        assert!(same_key(&a, &a.clone()), "{a}");
        for at in 0..len {
            let mut b = a.clone().into_bytes();
            b[at] = b'_';
            let b = String::from_utf8(b).expect("ascii");
            assert_eq!(same_key(&a, &b), a == b, "{a} {b}");
            assert!(!same_key(&a, &b), "{a} {b}");
        }
        let longer = format!("{a}x");
        assert!(!same_key(&a, &longer) && !same_key(&longer, &a), "{a}");
    }
    assert!(same_key("occurred_at", "occurred_at"));
    assert!(!same_key("occurred_at", "platform_id"));
}

/// Lines the one-pass scan leaves to the general path (a string over the limit, a key
/// repeated, at once or after others with the same bit) get the general path's answer.
#[test]
fn long_strings_and_repeated_keys_decode_as_the_general_parser() {
    let latest = parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
    let long = "x".repeat(MAX_STRING_BYTES + 1);
    let at_limit = "x".repeat(MAX_STRING_BYTES);
    let lines = [
        VALID.replace(r#""E1""#, &format!("\"{long}\"")),
        VALID.replace(r#""E1""#, &format!("\"{at_limit}\"")),
        VALID.replace(r#""e1""#, &format!("\"{long}\"")),
        VALID.replace(r#""e1""#, &format!("\"{}\"", "e".repeat(129))),
        VALID.replace(r#""revision":0"#, r#""revision":0,"revision":1"#),
        VALID.replace(r#""revision":0"#, r#""revision":0,"x":1,"revision":0"#),
        // Keys of one length and last byte, distinct: each has the other's bit.
        VALID.replace(r#""revision":0"#, r#""revision":0,"ab":1,"bb":2"#),
    ];
    let expected = [
        Some(Reason::OutOfRange),
        None,
        Some(Reason::OutOfRange),
        Some(Reason::OutOfRange),
        Some(Reason::InvalidJson),
        Some(Reason::InvalidJson),
        None,
    ];
    for (line, expected) in lines.iter().zip(expected) {
        let one_pass = decode_at(line.as_bytes(), None, latest);
        assert_eq!(
            one_pass,
            decode_general(line.as_bytes(), None, latest),
            "{line:.80}"
        );
        assert_eq!(one_pass.err().map(|r| r.reason), expected, "{line:.80}");
    }
}

/// `safe_integer` reads what `str::parse` reads, within 16 digits and 2^53 − 1.
#[test]
fn safe_integer_is_a_bounded_parse() {
    let reference = |n: &str| {
        (n.len() <= 16)
            .then(|| n.parse::<u64>().ok())
            .flatten()
            .filter(|x| *x <= MAX_SAFE_INTEGER)
    };
    for n in [
        "",
        "0",
        "7",
        "0012",
        "1096",
        "9007199254740991",
        "9007199254740992",
        "9999999999999999",
        "99999999999999999",
        "12a",
        "1.5",
        "-1",
        " 1",
    ] {
        assert_eq!(safe_integer(n), reference(n), "{n:?}");
    }
    let mut x = 1u64;
    while x < MAX_SAFE_INTEGER {
        for n in [x - 1, x, x + 1] {
            let text = n.to_string();
            assert_eq!(safe_integer(&text), Some(n), "{text}");
        }
        x = x * 3 + 1;
    }
}

/// `small_str` is `SmolStr::new` for every length around the inline capacity it assumes
/// (a smaller capacity in a later smol_str would panic here, not in production).
#[test]
fn small_str_is_smol_str_new() {
    for len in 0..=40 {
        let text: String = (0..len)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let ours = small_str(&text);
        assert_eq!(ours, SmolStr::new(&text));
        assert_eq!(ours.as_str(), text);
        assert_eq!(ours.is_heap_allocated(), len > 23, "{len}");
    }
    assert_eq!(small_str("é—"), SmolStr::new("é—"));
}

/// The line read in the order its members are expected gives the outcome the one-pass scan
/// gives it: every generated line on every topic (none is read differently), every
/// single-byte change of a sample, and hand-made lines either side of the expected shape.
#[test]
fn the_expected_order_decodes_as_the_flat_pass() {
    let latest = parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
    let by_scan = |line: &str, topic: Option<Stream>| {
        let mut members = flat::NO_MEMBERS;
        let n = flat::scan(line, &mut members)
            .unwrap_or_else(|| panic!("read in order but not by the scan: {line}"));
        validate(&members[..n], Strings::Short, topic, latest)
    };
    let same = |line: &str, topic: Option<Stream>| -> bool {
        let Some(outcome) = decode_expected(line, topic, latest) else {
            return false;
        };
        assert_eq!(outcome, by_scan(line, topic), "{line}");
        true
    };
    let lines: Vec<String> = paceline_generate::generate(11, 0.01)
        .into_iter()
        .chain(EXAMPLES.lines().map(str::to_string))
        .collect();
    let topics = [None, Some(Stream::Filings), Some(Stream::Telemetry)];
    let mut in_order = 0;
    for line in &lines {
        for topic in topics {
            in_order += usize::from(same(line, topic));
        }
    }
    // Most lines are generated in the expected order; the test means little otherwise.
    assert!(
        in_order * 2 > lines.len() * 3,
        "{in_order} readings in order of {} lines",
        lines.len()
    );
    let mut changed_in_order = 0;
    for_each_changed(&lines, 97, b"\"\\{}[],:-.e0 9tn\x01", |changed| {
        if let Ok(changed) = std::str::from_utf8(changed) {
            changed_in_order += usize::from(same(changed, None));
        }
    });
    assert!(changed_in_order > 1000, "{changed_in_order}");

    let heartbeat = |envelope: &str, fields: &str| {
        format!("{{{envelope},\"platform_id\":\"p1\",\"platform_kind\":\"network_communication\",{fields}}}")
    };
    let envelope =
        r#""event_id":"t1","type":"platform.heartbeat","occurred_at":"2023-04-20T08:00:00Z""#;
    let fields = r#""status":"up","interval_s":60"#;
    // The expected shape, valid or not: read in order, with the scan's outcome.
    for line in [
        heartbeat(envelope, fields),
        heartbeat(&format!("{envelope},\"source\":\"gw\""), fields),
        heartbeat(&format!("{envelope},\"source\":7"), fields),
        heartbeat(envelope, r#""status":"up","interval_s":0"#),
        heartbeat(envelope, r#""status":"sideways","interval_s":60"#),
        heartbeat(envelope, r#""status":"up","interval_s":"60""#),
        heartbeat(&envelope.replace("08:00:00Z", "08:00:00"), fields),
    ] {
        assert!(same(&line, None), "{line}");
        assert!(same(&line, Some(Stream::Telemetry)), "{line}");
    }
    // Any other shape is left to the scan (or the general parser).
    for line in [
        heartbeat(envelope, fields).replace("\":\"up", "\": \"up"),
        heartbeat(envelope, fields).replace('{', "{ "),
        format!("{} ", heartbeat(envelope, fields)),
        heartbeat(envelope, r#""status":"up","interval_s":60,"extra":1"#),
        heartbeat(envelope, r#""status":null,"interval_s":60"#),
        heartbeat(envelope, r#""interval_s":60,"status":"up""#),
        heartbeat(envelope, r#""status":"up","interval_s":[60]"#),
        heartbeat(envelope, r#""status":"up""#),
        heartbeat(&format!("{envelope},\"source\":null"), fields),
        heartbeat(envelope, &format!("{fields},\"source\":\"gw\"")),
        heartbeat(
            &envelope.replace("\"type\":\"platform.heartbeat\",", ""),
            fields,
        ),
        heartbeat(
            &envelope.replace(
                "\"event_id\":\"t1\",\"type\":\"platform.heartbeat\"",
                "\"type\":\"platform.heartbeat\",\"event_id\":\"t1\"",
            ),
            fields,
        ),
        heartbeat(
            &envelope.replace("platform.heartbeat", "platform.nap"),
            fields,
        ),
        heartbeat(
            envelope,
            &format!(
                "\"status\":\"{}\",\"interval_s\":60",
                "u".repeat(MAX_STRING_BYTES + 1)
            ),
        ),
    ] {
        assert_eq!(decode_expected(&line, None, latest), None, "{line}");
    }
    let line = heartbeat(envelope, fields);
    assert_eq!(decode_expected(&line, Some(Stream::Filings), latest), None);
    assert!(decode_expected(&line, None, latest).is_some_and(|e| e.is_ok()));
}

/// `read` accepts a value exactly where the three checks it stands for all pass, for every
/// kind a type's fields have and values either side of each kind's limits.
#[test]
fn read_is_the_three_checks() {
    let kinds: Vec<Kind> = EventType::TABLE
        .iter()
        .flat_map(|(t, _, _)| fields_of(*t).iter().map(|(_, k)| *k))
        .collect();
    let long = "s".repeat(MAX_STRING_BYTES + 1);
    let strings = [
        "",
        "x",
        "up",
        "down",
        "srdi",
        "granted",
        "revoked",
        "basic",
        "deep",
        "2023-Q1",
        "1969-Q4",
        "2199-Q4",
        "2200-Q1",
        "2023-Q5",
        "2023-q1",
        "cybersecurity",
        "network_communication",
        "underway",
        "delivered",
        "industrial_internet",
        &long,
    ];
    let numbers = [
        "0",
        "-0",
        "-00",
        "1",
        "-1",
        "1.5",
        "-2.5",
        "1e3",
        "1E3",
        "0.0",
        "-0.0",
        "86400",
        "86400.5",
        "1e15",
        "1000000000000001",
        "-1e15",
        "-1000000000000001",
        "1e400",
        "9007199254740991",
        "9007199254740992",
        "12345678901234567",
    ];
    let mut values: Vec<Scalar<'_>> = strings.iter().map(|s| Scalar::Str(s)).collect();
    values.extend(numbers.iter().map(|n| Scalar::Number(n)));
    values.extend([Scalar::Bool(true), Scalar::Bool(false), Scalar::Null]);
    let mut accepted = 0;
    for kind in kinds {
        for &v in &values {
            let checks = type_ok(kind, v) && value_ok(kind, v) && in_range(kind, v);
            let typed = read(kind, v);
            assert_eq!(typed.is_some(), checks, "{v:?}");
            accepted += usize::from(checks);
        }
    }
    assert!(accepted > 50, "{accepted}");
    assert_eq!(read(AMOUNT, Scalar::Number("2.5")), Some(Typed::Num(2.5)));
    assert_eq!(read(Kind::Int, Scalar::Number("-0")), Some(Typed::Int(0)));
    assert_eq!(
        read(Kind::Period, Scalar::Str("2023-Q2")),
        Some(Typed::Period(2023 * 4 + 1))
    );
}

/// `accept` gives an event exactly where `reasons` finds none, and the same event: every
/// generated line and every single-byte change of a sample, on the fields the scan reads.
#[test]
fn accept_is_what_reasons_accept() {
    let latest = parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
    let lines: Vec<String> = paceline_generate::generate(13, 0.01)
        .into_iter()
        .chain(EXAMPLES.lines().map(str::to_string))
        .collect();
    let (mut passed, mut refused) = (0, 0);
    let mut compare = |line: &str| {
        let mut members = flat::NO_MEMBERS;
        let Some(n) = flat::scan(line, &mut members) else {
            return;
        };
        let members = &members[..n];
        let Some(ty) = members.iter().find_map(|(k, v)| match (*k, v) {
            ("type", Scalar::Str(t)) => EventType::from_name(t),
            _ => None,
        }) else {
            return;
        };
        let fields = Fields::find(members, fields_of(ty));
        let by_reasons = reasons(ty, &fields, Strings::Short, None, latest);
        assert_eq!(
            accept(ty, &fields, latest),
            by_reasons.clone().ok(),
            "{line}"
        );
        if by_reasons.is_ok() {
            passed += 1;
        } else {
            refused += 1;
        }
    };
    for line in &lines {
        compare(line);
    }
    for_each_changed(&lines, 101, b"\"\\-.e0 9tn\x01", |changed| {
        if let Ok(changed) = std::str::from_utf8(changed) {
            compare(changed);
        }
    });
    assert!(
        passed > 1000 && refused > 1000,
        "{passed} passed, {refused} refused"
    );
}
