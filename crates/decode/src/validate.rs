//! Validation of one event against docs/events.md, reasons checked in the spec's order: size,
//! depth, JSON, type, stream, missing fields, JSON types, timestamp, enumeration values,
//! ranges. Every field of the type is checked for one reason before any field is checked
//! for the next, so the first reason that applies anywhere is the one given.

use paceline_model::event::{
    Cluster, EventType, Field, PlatformKind, PlatformStatus, ProjectKind, ProjectStage, Region,
    ScenarioStage,
};
use paceline_model::time::{parse_rfc3339, QuarterIndex, TimestampError};
use paceline_model::{Body, Event, Nanos, SmolStr, Stream};

use crate::flat::{self, Scalar};
use crate::json::{parse_nested, Value};
use crate::reason::{Reason, Rejection};

/// Largest accepted event, in bytes.
pub const MAX_EVENT_BYTES: usize = 65_536;
/// Deepest accepted bracket nesting.
pub const MAX_DEPTH: usize = 32;
/// Longest accepted string other than `event_id`, in bytes.
pub const MAX_STRING_BYTES: usize = 4_096;
const MAX_EVENT_ID_BYTES: usize = 128;
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// The checks that need no parsing: size, then bracket depth counted outside strings.
pub fn prescan(bytes: &[u8]) -> Result<(), Reason> {
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(Reason::TooLarge);
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &c in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(Reason::TooDeep);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bool,
    /// JSON integer without fraction or exponent, 0 to 2^53 − 1.
    Int,
    /// Finite number with bounds (docs/events.md, "Limits": no sum can overflow); `strict`
    /// excludes the lower bound.
    Num {
        min: Option<f64>,
        strict: bool,
        max: f64,
    },
    Enum(fn(&str) -> bool),
    Period,
    Timestamp,
}

/// The largest amount in CNY an event may carry.
pub const MAX_AMOUNT_CNY: f64 = 1e15;
/// The longest heartbeat interval, in seconds (a day).
pub const MAX_INTERVAL_S: f64 = 86_400.0;
/// Years an `occurred_at` or a `period` may fall in (ticks and quarters stay representable).
pub const YEARS: std::ops::Range<i64> = 1970..2200;
/// How far ahead of the wall clock an `occurred_at` may be, by default: 1 day.
pub const DEFAULT_MAX_FUTURE: Nanos = 86_400 * 1_000_000_000;

/// `added_value_cny`: any sign, within ±1e15.
const SIGNED_AMOUNT: Kind = Kind::Num {
    min: Some(-MAX_AMOUNT_CNY),
    strict: false,
    max: MAX_AMOUNT_CNY,
};
/// Amounts in CNY: 0 to 1e15.
const AMOUNT: Kind = Kind::Num {
    min: Some(0.0),
    strict: false,
    max: MAX_AMOUNT_CNY,
};
/// `interval_s`: over 0, at most a day.
const INTERVAL: Kind = Kind::Num {
    min: Some(0.0),
    strict: true,
    max: MAX_INTERVAL_S,
};

fn fields_of(ty: EventType) -> &'static [(&'static str, Kind)] {
    use Kind::*;
    match ty {
        EventType::Registered => &[
            ("enterprise_id", Str),
            ("name", Str),
            ("cluster", Enum(|s| Cluster::from_str(s).is_some())),
            ("region", Enum(|s| Region::from_str(s).is_some())),
            ("sme", Bool),
        ],
        EventType::Deregistered => &[("enterprise_id", Str)],
        EventType::Valuation => &[("enterprise_id", Str), ("valuation_cny", AMOUNT)],
        EventType::Certification => &[
            ("enterprise_id", Str),
            ("certification", Enum(|s| s == "srdi")),
            ("action", Enum(|s| s == "granted" || s == "revoked")),
        ],
        EventType::Financials => &[
            ("enterprise_id", Str),
            ("period", Period),
            ("revenue_cny", AMOUNT),
            ("added_value_cny", SIGNED_AMOUNT),
            ("revision", Int),
        ],
        EventType::CloudMigration => &[
            ("enterprise_id", Str),
            ("level", Enum(|s| s == "basic" || s == "deep")),
        ],
        EventType::Heartbeat => &[
            ("platform_id", Str),
            (
                "platform_kind",
                Enum(|s| PlatformKind::from_str(s).is_some()),
            ),
            ("status", Enum(|s| PlatformStatus::from_str(s).is_some())),
            ("interval_s", INTERVAL),
        ],
        EventType::PlatformUsage => &[
            ("platform_id", Str),
            (
                "platform_kind",
                Enum(|s| PlatformKind::from_str(s).is_some()),
            ),
            ("api_calls", Int),
            ("records_shared", Int),
            ("connected_enterprises", Int),
        ],
        EventType::ScenarioStage => &[
            ("scenario_id", Str),
            ("name", Str),
            ("field", Enum(|s| Field::from_str(s).is_some())),
            ("region", Enum(|s| Region::from_str(s).is_some())),
            ("stage", Enum(|s| ScenarioStage::from_str(s).is_some())),
        ],
        EventType::ScenarioUsage => &[
            ("scenario_id", Str),
            ("active_users", Int),
            ("transactions", Int),
            ("value_cny", AMOUNT),
        ],
        EventType::ProjectStage => &[
            ("project_id", Str),
            ("name", Str),
            ("project_kind", Enum(|s| ProjectKind::from_str(s).is_some())),
            ("region", Enum(|s| Region::from_str(s).is_some())),
            ("stage", Enum(|s| ProjectStage::from_str(s).is_some())),
        ],
    }
}

/// The envelope's fields: `(name, required)`.
const ENVELOPE: [(&str, Kind, bool); 3] = [
    ("event_id", Kind::Str, true),
    ("occurred_at", Kind::Timestamp, true),
    ("source", Kind::Str, false),
];

/// The instants an `occurred_at` may be: those of [`YEARS`].
const OCCURRED_AT_RANGE: std::ops::Range<Nanos> = year_start(YEARS.start)..year_start(YEARS.end);

/// The first instant of a year, UTC.
const fn year_start(year: i64) -> Nanos {
    paceline_model::time::days_from_civil(year, 1, 1) * paceline_model::time::DAY
}

fn parse_period(s: &str) -> Option<QuarterIndex> {
    let b = s.as_bytes();
    if b.len() != 7 || b[4] != b'-' || b[5] != b'Q' || !b[..4].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let year: i32 = s[..4].parse().ok()?;
    let q = match b[6] {
        b'1'..=b'4' => (b[6] - b'1') as i32,
        _ => return None,
    };
    Some(year * 4 + q)
}

fn type_ok(kind: Kind, v: Scalar<'_>) -> bool {
    match (kind, v) {
        (Kind::Str | Kind::Enum(_) | Kind::Period | Kind::Timestamp, Scalar::Str(_)) => true,
        (Kind::Bool, Scalar::Bool(_)) => true,
        // A JSON number is an integer when it has neither fraction nor exponent.
        (Kind::Int, Scalar::Number(n)) => !n.bytes().any(|c| matches!(c, b'.' | b'e' | b'E')),
        (Kind::Num { .. }, Scalar::Number(_)) => true,
        _ => false,
    }
}

fn in_range(kind: Kind, v: Scalar<'_>) -> bool {
    match (kind, v) {
        (Kind::Int, Scalar::Number(n)) => integer(n).is_some(),
        (Kind::Num { .. }, Scalar::Number(n)) => number(kind, n).is_some(),
        (Kind::Period, Scalar::Str(s)) => period(s).is_some(),
        (Kind::Str | Kind::Enum(_), Scalar::Str(s)) => s.len() <= MAX_STRING_BYTES,
        _ => true,
    }
}

/// Whether a string is one of the values its kind allows (`unknown_value` otherwise).
fn value_ok(kind: Kind, v: Scalar<'_>) -> bool {
    match (kind, v) {
        (Kind::Enum(valid), Scalar::Str(s)) => valid(s),
        (Kind::Period, Scalar::Str(s)) => parse_period(s).is_some(),
        _ => true,
    }
}

/// A field's value as its kind reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Typed<'v> {
    Str(&'v str),
    Bool(bool),
    Int(u64),
    Num(f64),
    Period(QuarterIndex),
}

/// The value of a type's field (not the envelope's), if it passes every check of its kind:
/// `Some` exactly where [`type_ok`], [`value_ok`] and [`in_range`] all hold, each number
/// parsed once (the checks and then the body each parsed it).
fn read(kind: Kind, v: Scalar<'_>) -> Option<Typed<'_>> {
    match (kind, v) {
        (Kind::Str, Scalar::Str(s)) => (s.len() <= MAX_STRING_BYTES).then_some(Typed::Str(s)),
        (Kind::Enum(valid), Scalar::Str(s)) => {
            (s.len() <= MAX_STRING_BYTES && valid(s)).then_some(Typed::Str(s))
        }
        (Kind::Bool, Scalar::Bool(b)) => Some(Typed::Bool(b)),
        (Kind::Int, Scalar::Number(n)) => integer(n).map(Typed::Int),
        (Kind::Num { .. }, Scalar::Number(n)) => number(kind, n).map(Typed::Num),
        (Kind::Period, Scalar::Str(s)) => period(s).map(Typed::Period),
        _ => None,
    }
}

/// An integer field's value: a JSON integer from 0 to 2^53 − 1 (`-0` is 0). A number with
/// a fraction or an exponent is none (its digits are not all digits).
fn integer(n: &str) -> Option<u64> {
    match n.strip_prefix('-') {
        Some(d) => d.bytes().all(|c| c == b'0').then_some(0),
        None => safe_integer(n),
    }
}

/// A number field's value: finite and within its kind's bounds.
fn number(kind: Kind, n: &str) -> Option<f64> {
    let Kind::Num { min, strict, max } = kind else {
        return None;
    };
    let x = n
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x <= max)?;
    let above_min = match min {
        None => true,
        Some(m) if strict => x > m,
        Some(m) => x >= m,
    };
    above_min.then_some(x)
}

/// A `period`'s quarter: `YYYY-Qn` in [`YEARS`].
fn period(s: &str) -> Option<QuarterIndex> {
    parse_period(s).filter(|q| YEARS.contains(&(q.div_euclid(4) as i64)))
}

/// The value of an unsigned JSON integer of at most 16 digits, if it is at most
/// 2^53 − 1. Sixteen decimal digits cannot overflow a `u64`, so the digits are summed
/// without the overflow checks of `str::parse`.
fn safe_integer(n: &str) -> Option<u64> {
    if n.is_empty() || n.len() > 16 {
        return None;
    }
    let mut x = 0u64;
    for c in n.bytes() {
        if !c.is_ascii_digit() {
            return None;
        }
        x = x * 10 + u64::from(c - b'0');
    }
    (x <= MAX_SAFE_INTEGER).then_some(x)
}

/// Whether any string anywhere in `v` is longer than the limit.
fn has_long_string(v: Scalar<'_>) -> bool {
    match v {
        Scalar::Str(s) => s.len() > MAX_STRING_BYTES,
        Scalar::Nested(v) => has_long_nested_string(v),
        _ => false,
    }
}

fn has_long_nested_string(v: &Value<'_>) -> bool {
    match v {
        Value::String(s) => s.len() > MAX_STRING_BYTES,
        Value::Array(items) => items.iter().any(has_long_nested_string),
        Value::Object(members) => members.iter().any(|(_, v)| has_long_nested_string(v)),
        _ => false,
    }
}

fn reject(reason: Reason, stream: Option<Stream>, detail: impl Into<String>) -> Rejection {
    Rejection {
        reason,
        stream,
        detail: detail.into(),
    }
}

/// `a == b` for a member's key against a field's name, without a call to `memcmp` for
/// the short keys events have (the call was most of the time spent finding members):
/// keys of 8 to 16 bytes compare as two overlapping words.
pub(crate) fn same_key(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w)
    };
    match n {
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// Where `event_id`, `occurred_at` and `source` are in [`ENVELOPE`].
const EVENT_ID: usize = 0;
const OCCURRED_AT: usize = 1;
const SOURCE: usize = 2;
/// Fields an event is checked for: the envelope's and the most any type has.
const MAX_FIELDS: usize = ENVELOPE.len() + 5;

/// The members of one event that validation reads, found in one pass over the object:
/// the envelope's fields, then the type's in [`fields_of`]'s order. A member that is
/// `null` counts as absent (docs/events.md). Every check then reads them by position
/// instead of searching the members again.
struct Fields<'v> {
    found: [Option<Scalar<'v>>; MAX_FIELDS],
    spec: &'static [(&'static str, Kind)],
}

impl<'v> Fields<'v> {
    fn find(members: &[(&'v str, Scalar<'v>)], spec: &'static [(&'static str, Kind)]) -> Self {
        let mut names = [""; MAX_FIELDS];
        let count = ENVELOPE.len() + spec.len();
        let envelope = ENVELOPE.iter().map(|(name, _, _)| *name);
        for (slot, name) in names
            .iter_mut()
            .zip(envelope.chain(spec.iter().map(|(name, _)| *name)))
        {
            *slot = name;
        }
        let names = &names[..count];
        let mut found = [None; MAX_FIELDS];
        // Members mostly come in the order of the names: each is looked for first where
        // the one before was found, then everywhere.
        let mut next = 0;
        for &(key, value) in members {
            let hint = names
                .get(next)
                .filter(|name| same_key(name, key))
                .map(|_| next);
            let Some(i) = hint.or_else(|| names.iter().position(|name| same_key(name, key))) else {
                continue;
            };
            next = i + 1;
            if value != Scalar::Null {
                found[i] = Some(value);
            }
        }
        Fields { found, spec }
    }

    /// By position among the envelope's fields followed by the type's.
    fn at(&self, i: usize) -> Option<Scalar<'v>> {
        self.found.get(i).copied().flatten()
    }

    /// The type's field `i` (its position in [`fields_of`]).
    fn spec(&self, i: usize) -> Option<Scalar<'v>> {
        self.at(ENVELOPE.len() + i)
    }
}

/// Size, depth and JSON, in the spec's order, in one pass over a valid line: the bracket
/// depth [`prescan`] counts is the parser's own nesting when the text is JSON, so the
/// separate scan runs only for a line that is not, to tell `too_deep` from `invalid_json`.
fn parse_checked(bytes: &[u8]) -> Result<Value<'_>, (Reason, String)> {
    let too_deep = || {
        (
            Reason::TooDeep,
            format!("brackets nested deeper than {MAX_DEPTH}"),
        )
    };
    if bytes.len() > MAX_EVENT_BYTES {
        let detail = format!("{} bytes, over {MAX_EVENT_BYTES}", bytes.len());
        return Err((Reason::TooLarge, detail));
    }
    let parsed = std::str::from_utf8(bytes)
        .map_err(|e| format!("not UTF-8: {e}"))
        .and_then(|text| parse_nested(text).map_err(|e| e.to_string()));
    match parsed {
        Ok((_, deepest)) if deepest > MAX_DEPTH => Err(too_deep()),
        Ok((root, _)) => Ok(root),
        Err(_) if prescan(bytes) == Err(Reason::TooDeep) => Err(too_deep()),
        Err(detail) => Err((Reason::InvalidJson, detail)),
    }
}

/// Decodes and validates one event. `topic_stream` is the stream the message came from
/// (Kafka), or `None` where a file mixes streams (replay); it decides `wrong_stream` and the
/// stream a rejection is counted under.
pub fn decode(bytes: &[u8], topic_stream: Option<Stream>) -> Result<Event, Rejection> {
    decode_at(bytes, topic_stream, latest_occurred_at(DEFAULT_MAX_FUTURE))
}

/// The latest `occurred_at` accepted now: the wall clock plus `max_future`.
pub fn latest_occurred_at(max_future: Nanos) -> Nanos {
    // The service's clock, not the system's: a clock stepped back must not turn current
    // events `out_of_range`.
    paceline_model::clock::now().saturating_add(max_future)
}

/// [`decode`] with the latest `occurred_at` accepted given ([`latest_occurred_at`] with the
/// configured `streams.max_future_s`).
pub fn decode_at(
    bytes: &[u8],
    topic_stream: Option<Stream>,
    latest: Nanos,
) -> Result<Event, Rejection> {
    // Most lines are a flat object of plain scalars in the expected order: read in place,
    // field by field. A flat line in another order is read in one pass into a members
    // array. Any other line (and any line that is not JSON) goes through the general
    // parser, which names its reason. All three hand [`check`] the same fields, so each
    // line gets the same outcome whichever path reads it.
    let mut flat = flat::NO_MEMBERS;
    if bytes.len() <= MAX_EVENT_BYTES {
        let text = std::str::from_utf8(bytes).ok();
        if let Some(decoded) = text.and_then(|text| decode_expected(text, topic_stream, latest)) {
            return decoded;
        }
        if let Some(n) = text.and_then(|text| flat::scan(text, &mut flat)) {
            return validate(&flat[..n], Strings::Short, topic_stream, latest);
        }
    }
    decode_general(bytes, topic_stream, latest)
}

/// [`decode_at`] through the general parser, whatever the line's shape.
fn decode_general(
    bytes: &[u8],
    topic_stream: Option<Stream>,
    latest: Nanos,
) -> Result<Event, Rejection> {
    let root =
        parse_checked(bytes).map_err(|(reason, detail)| reject(reason, topic_stream, detail))?;
    let Value::Object(members) = &root else {
        return Err(reject(
            Reason::InvalidJson,
            topic_stream,
            "not a JSON object",
        ));
    };
    let members: Vec<(&str, Scalar<'_>)> = members
        .iter()
        .map(|(key, value)| (key.as_ref(), Scalar::of(value)))
        .collect();
    validate(&members, Strings::Any(&members), topic_stream, latest)
}

/// What is known of the lengths of the members' strings.
#[derive(Clone, Copy)]
enum Strings<'m, 'v> {
    /// None is over [`MAX_STRING_BYTES`] ([`flat::scan`] leaves longer ones to the
    /// general path).
    Short,
    /// Any length, nested ones too: these members are searched for one.
    Any(&'m [(&'v str, Scalar<'v>)]),
}

/// The line nearly every event is, read without a members array: the envelope's fields,
/// `type` second, then the type's fields in [`fields_of`]'s order, no whitespace, no `null`.
/// `None` for any other line, which [`flat::scan`] or the general parser then reads.
///
/// What it reads, [`flat::scan`] reads as the same members in the same order (see
/// [`flat::Cursor`]), and [`Fields::find`] finds each at the position it is read into here;
/// the type and stream are those [`validate`] finds. So [`check`] gives the same outcome.
fn decode_expected(
    text: &str,
    topic_stream: Option<Stream>,
    latest: Nanos,
) -> Option<Result<Event, Rejection>> {
    let mut line = flat::Cursor::open(text)?;
    let mut found = [None; MAX_FIELDS];
    found[EVENT_ID] = Some(line.member("event_id")?);
    let Scalar::Str(ty) = line.member("type")? else {
        return None;
    };
    let event_type = EventType::from_name(ty)?;
    // A line on another stream's topic is `wrong_stream`, which validation names.
    if topic_stream.is_some_and(|topic| topic != event_type.stream()) {
        return None;
    }
    found[OCCURRED_AT] = Some(line.member("occurred_at")?);
    if line.next_is("source") {
        found[SOURCE] = Some(line.member("source")?);
    }
    let spec = fields_of(event_type);
    for (slot, (name, _)) in found[ENVELOPE.len()..].iter_mut().zip(spec) {
        *slot = Some(line.member(name)?);
    }
    if !line.close() {
        return None;
    }
    let fields = Fields { found, spec };
    Some(check(
        event_type,
        &fields,
        Strings::Short,
        topic_stream,
        latest,
    ))
}

/// The checks from `unknown_type` on, over an object's members in order.
fn validate(
    members: &[(&str, Scalar<'_>)],
    strings: Strings<'_, '_>,
    topic_stream: Option<Stream>,
    latest: Nanos,
) -> Result<Event, Rejection> {
    let ty = match members.iter().find(|(key, _)| *key == "type") {
        Some((_, Scalar::Str(t))) => *t,
        Some(_) => {
            return Err(reject(
                Reason::UnknownType,
                topic_stream,
                "`type` is not a string",
            ))
        }
        None => {
            return Err(reject(
                Reason::UnknownType,
                topic_stream,
                "`type` is missing",
            ))
        }
    };
    let Some(event_type) = EventType::from_name(ty) else {
        let shown: String = ty.chars().take(64).collect();
        return Err(reject(
            Reason::UnknownType,
            topic_stream,
            format!("unknown type `{shown}`"),
        ));
    };
    let stream = event_type.stream();
    if let Some(topic) = topic_stream {
        if topic != stream {
            return Err(reject(
                Reason::WrongStream,
                Some(topic),
                format!(
                    "`{ty}` belongs to stream {}, not {}",
                    stream.as_str(),
                    topic.as_str()
                ),
            ));
        }
    }
    let fields = Fields::find(members, fields_of(event_type));
    check(event_type, &fields, strings, topic_stream, latest)
}

/// The checks from `missing_field` on, over the fields of an event of type `event_type`,
/// in the spec's order of reasons.
fn check(
    event_type: EventType,
    fields: &Fields<'_>,
    strings: Strings<'_, '_>,
    topic_stream: Option<Stream>,
    latest: Nanos,
) -> Result<Event, Rejection> {
    // Nearly every event passes: read it once, field by field; only an event refused there
    // goes through the reasons one by one, to name the first that applies. Strings of any
    // length (the general parser's members) have a check of their own, left to `reasons`.
    if let Strings::Short = strings {
        if let Some(event) = accept(event_type, fields, latest) {
            return Ok(event);
        }
    }
    reasons(event_type, fields, strings, topic_stream, latest)
}

/// The event of type `event_type` if it passes every check from `missing_field` on (with
/// strings within [`MAX_STRING_BYTES`], as [`Strings::Short`] promises): the outcome
/// [`reasons`] gives an event it accepts, and `None` for every event it refuses.
fn accept(event_type: EventType, fields: &Fields<'_>, latest: Nanos) -> Option<Event> {
    let Some(Scalar::Str(id)) = fields.at(EVENT_ID) else {
        return None;
    };
    if id.is_empty() || id.len() > MAX_EVENT_ID_BYTES {
        return None;
    }
    if fields
        .at(SOURCE)
        .is_some_and(|v| !type_ok(ENVELOPE[SOURCE].1, v))
    {
        return None;
    }
    let Some(Scalar::Str(occurred)) = fields.at(OCCURRED_AT) else {
        return None;
    };
    let at = parse_rfc3339(occurred)
        .ok()
        .filter(|at| OCCURRED_AT_RANGE.contains(at) && *at <= latest)?;
    Some(Event {
        id: small_str(id),
        at,
        body: read_body(event_type, fields)?,
    })
}

/// Every check from `missing_field` on, in the spec's order of reasons: the first reason
/// that applies to any field is the one given.
fn reasons(
    event_type: EventType,
    fields: &Fields<'_>,
    strings: Strings<'_, '_>,
    topic_stream: Option<Stream>,
    latest: Nanos,
) -> Result<Event, Rejection> {
    let stream_tag = Some(topic_stream.unwrap_or(event_type.stream()));
    let spec = fields.spec;
    // One pass over the fields for two reasons: a missing field anywhere comes before a
    // wrong type anywhere, so the first of each is kept and the missing one wins.
    let (mut missing, mut wrong_type) = (None, None);
    let envelope = ENVELOPE.iter().copied();
    let of_type = spec.iter().map(|&(name, kind)| (name, kind, true));
    for (i, (name, kind, required)) in envelope.chain(of_type).enumerate() {
        match fields.at(i) {
            None if required => {
                missing.get_or_insert(name);
            }
            Some(v) if !type_ok(kind, v) => {
                wrong_type.get_or_insert(name);
            }
            _ => {}
        }
    }
    if let Some(name) = missing {
        return Err(reject(
            Reason::MissingField,
            stream_tag,
            format!("`{name}` is missing"),
        ));
    }
    if let Some(name) = wrong_type {
        return Err(reject(
            Reason::WrongType,
            stream_tag,
            format!("`{name}` has the wrong JSON type"),
        ));
    }
    let Some(Scalar::Str(occurred)) = fields.at(OCCURRED_AT) else {
        return Err(reject(
            Reason::MissingField,
            stream_tag,
            "`occurred_at` is missing",
        ));
    };
    let at = parse_rfc3339(occurred);
    if at == Err(TimestampError::Invalid) {
        return Err(reject(
            Reason::BadTimestamp,
            stream_tag,
            "`occurred_at` is not RFC 3339 with an offset",
        ));
    }
    for (i, (name, kind)) in spec.iter().enumerate() {
        let Some(Scalar::Str(s)) = fields.spec(i) else {
            continue;
        };
        if !value_ok(*kind, Scalar::Str(s)) {
            let shown: String = s.chars().take(64).collect();
            return Err(reject(
                Reason::UnknownValue,
                stream_tag,
                format!("`{name}` has unknown value `{shown}`"),
            ));
        }
    }
    let at = match at {
        Ok(at) if OCCURRED_AT_RANGE.contains(&at) => at,
        _ => {
            return Err(reject(
                Reason::OutOfRange,
                stream_tag,
                "`occurred_at` is outside the years 1970 to 2199",
            ))
        }
    };
    if at > latest {
        return Err(reject(
            Reason::OutOfRange,
            stream_tag,
            "`occurred_at` is further ahead of the clock than `streams.max_future_s` allows",
        ));
    }
    let Some(Scalar::Str(id)) = fields.at(EVENT_ID) else {
        return Err(reject(
            Reason::MissingField,
            stream_tag,
            "`event_id` is missing",
        ));
    };
    if id.is_empty() || id.len() > MAX_EVENT_ID_BYTES {
        return Err(reject(
            Reason::OutOfRange,
            stream_tag,
            format!("`event_id` is {} bytes, not 1 to 128", id.len()),
        ));
    }
    for (i, (name, kind)) in spec.iter().enumerate() {
        if let Some(v) = fields.spec(i) {
            if !in_range(*kind, v) {
                return Err(reject(
                    Reason::OutOfRange,
                    stream_tag,
                    format!("`{name}` is out of range"),
                ));
            }
        }
    }
    if let Strings::Any(members) = strings {
        for &(name, v) in members {
            if name != "event_id" && has_long_string(v) {
                return Err(reject(
                    Reason::OutOfRange,
                    stream_tag,
                    format!("a string in `{name}` is over {MAX_STRING_BYTES} bytes"),
                ));
            }
        }
    }
    let body = read_body(event_type, fields)
        .ok_or_else(|| reject(Reason::WrongType, stream_tag, "fields could not be read"))?;
    Ok(Event {
        id: small_str(id),
        at,
        body,
    })
}

/// An id or a name as a [`SmolStr`]: one that fits inline is copied byte by byte, which
/// for the short ids events carry is cheaper than the general constructor's call to copy.
fn small_str(s: &str) -> SmolStr {
    if s.len() <= 23 {
        SmolStr::new_inline(s)
    } else {
        SmolStr::new(s)
    }
}

/// The body of an event of type `ty`, every field of the type read by its kind ([`read`]):
/// `None` if any fails a check.
fn read_body(ty: EventType, v: &Fields<'_>) -> Option<Body> {
    let mut typed = [Typed::Bool(false); MAX_FIELDS - ENVELOPE.len()];
    for (i, (slot, &(_, kind))) in typed.iter_mut().zip(v.spec).enumerate() {
        *slot = read(kind, v.spec(i)?)?;
    }
    // By position in the type's fields (checked against the name in debug builds): a
    // search by name compared strings for every field of every event.
    let at = |i: usize, name: &str| {
        debug_assert_eq!(v.spec.get(i).map(|(n, _)| *n), Some(name));
        typed[i]
    };
    let e = |i: usize, k: &str| match at(i, k) {
        Typed::Str(s) => Some(s),
        _ => None,
    };
    let s = |i: usize, k: &str| e(i, k).map(small_str);
    let f = |i: usize, k: &str| match at(i, k) {
        Typed::Num(x) => Some(x),
        _ => None,
    };
    let u = |i: usize, k: &str| match at(i, k) {
        Typed::Int(x) => Some(x),
        _ => None,
    };
    Some(match ty {
        EventType::Registered => Body::Registered {
            enterprise: s(0, "enterprise_id")?,
            cluster: Cluster::from_str(e(2, "cluster")?)?,
            region: Region::from_str(e(3, "region")?)?,
            sme: at(4, "sme") == Typed::Bool(true),
        },
        EventType::Deregistered => Body::Deregistered {
            enterprise: s(0, "enterprise_id")?,
        },
        EventType::Valuation => Body::Valuation {
            enterprise: s(0, "enterprise_id")?,
            valuation_cny: f(1, "valuation_cny")?,
        },
        EventType::Certification => Body::Certification {
            enterprise: s(0, "enterprise_id")?,
            granted: e(2, "action")? == "granted",
        },
        EventType::Financials => Body::Financials {
            enterprise: s(0, "enterprise_id")?,
            period: match at(1, "period") {
                Typed::Period(q) => q,
                _ => return None,
            },
            revenue_cny: f(2, "revenue_cny")?,
            added_value_cny: f(3, "added_value_cny")?,
            revision: u(4, "revision")?,
        },
        EventType::CloudMigration => Body::CloudMigration {
            enterprise: s(0, "enterprise_id")?,
            deep: e(1, "level")? == "deep",
        },
        EventType::Heartbeat => Body::Heartbeat {
            platform: s(0, "platform_id")?,
            kind: PlatformKind::from_str(e(1, "platform_kind")?)?,
            status: PlatformStatus::from_str(e(2, "status")?)?,
            interval_s: f(3, "interval_s")?,
        },
        EventType::PlatformUsage => Body::PlatformUsage {
            platform: s(0, "platform_id")?,
            kind: PlatformKind::from_str(e(1, "platform_kind")?)?,
            api_calls: u(2, "api_calls")?,
            records_shared: u(3, "records_shared")?,
            connected_enterprises: u(4, "connected_enterprises")?,
        },
        EventType::ScenarioStage => Body::ScenarioStage {
            scenario: s(0, "scenario_id")?,
            field: Field::from_str(e(2, "field")?)?,
            region: Region::from_str(e(3, "region")?)?,
            stage: ScenarioStage::from_str(e(4, "stage")?)?,
        },
        EventType::ScenarioUsage => Body::ScenarioUsage {
            scenario: s(0, "scenario_id")?,
            active_users: u(1, "active_users")?,
            transactions: u(2, "transactions")?,
            value_cny: f(3, "value_cny")?,
        },
        EventType::ProjectStage => Body::ProjectStage {
            project: s(0, "project_id")?,
            kind: ProjectKind::from_str(e(2, "project_kind")?)?,
            region: Region::from_str(e(3, "region")?)?,
            stage: ProjectStage::from_str(e(4, "stage")?)?,
        },
    })
}

#[cfg(test)]
mod tests;
