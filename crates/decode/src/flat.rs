//! One pass over the line most events are: an object of scalar members, strings without
//! escapes. It reads the members in place (borrowed from the line, no tree, no allocation) or
//! gives up; the general parser ([`crate::json`]) then reads the line, so every line that is
//! not this shape, and every line that is not JSON, keeps its exact reason and detail.
//!
//! The one rule this module must keep: it accepts a line only if [`crate::json::parse`]
//! accepts it, and then with the same members in the same order. Anything it does not
//! handle (an escape, a nested value, a repeated key, more members than it keeps room for,
//! any syntax error) is a refusal, never a guess.

/// A member's value as validation reads it. A nested array or object is only ever read
/// through the general parser's tree.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scalar<'v> {
    Null,
    Bool(bool),
    /// The number as written (`5` and `5.0` differ for integer fields).
    Number(&'v str),
    /// The string, unescaped.
    Str(&'v str),
    Nested(&'v crate::json::Value<'v>),
}

impl<'v> Scalar<'v> {
    /// A member of the general parser's tree.
    pub(crate) fn of(value: &'v crate::json::Value<'v>) -> Self {
        use crate::json::Value;
        match value {
            Value::Null => Scalar::Null,
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Number(n) => Scalar::Number(n),
            Value::String(s) => Scalar::Str(s),
            Value::Array(_) | Value::Object(_) => Scalar::Nested(value),
        }
    }
}

/// The members kept in place: more than any event type has (eight fields and the type), so a
/// line over it has members no event needs and takes the general path.
pub(crate) const MAX_MEMBERS: usize = 16;

pub(crate) type Members<'v> = [(&'v str, Scalar<'v>); MAX_MEMBERS];

pub(crate) const NO_MEMBERS: Members<'static> = [("", Scalar::Null); MAX_MEMBERS];

/// The longest string value [`scan`] reads: a longer one is `out_of_range` (or an
/// `event_id` of its own limit), which the general path names, so validation of the
/// members [`scan`] gives needs no search for long strings.
pub(crate) const MAX_PLAIN_STRING: usize = crate::validate::MAX_STRING_BYTES;

/// The members of `text` if it is an object of scalars with plain strings, in order, into
/// `members`; their count. `None` when the line needs the general parser.
pub(crate) fn scan<'v>(text: &'v str, members: &mut Members<'v>) -> Option<usize> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    let mut n = 0;
    // A bit per key seen, chosen by its length and last byte: a repeated key is searched
    // for among the members only when its bit is set (the search compared every key with
    // every key before it, most of them without a match).
    let mut seen = 0u64;
    if b.get(i) == Some(&b'}') {
        return (skip_ws(b, i + 1) == b.len()).then_some(0);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let (key, after_key) = plain_string(text, i + 1)?;
        i = skip_ws(b, after_key);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let (value, after_value) = scalar(text, i)?;
        if let Scalar::Str(s) = value {
            // `out_of_range` for a long string: the general path checks where it is.
            if s.len() > MAX_PLAIN_STRING {
                return None;
            }
        }
        let bit = key_bit(key);
        // A repeated key is `invalid_json`: the general parser names it.
        if n == MAX_MEMBERS || (seen & bit != 0 && members[..n].iter().any(|(k, _)| *k == key)) {
            return None;
        }
        seen |= bit;
        members[n] = (key, value);
        n += 1;
        i = skip_ws(b, after_value);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return (skip_ws(b, i + 1) == b.len()).then_some(n),
            _ => return None,
        }
    }
}

/// A reading of the line nearly every event is: the keys it should have, in the order the
/// caller expects them, without whitespace. Each [`Cursor::member`] checks the next key
/// against the name expected instead of reading it as a string, so no members array is
/// built and searched. Whatever else comes (another key, a space, a `null`, a nested value)
/// is a refusal, and the caller reads the line by [`scan`] instead.
///
/// A line this reads to its end is one [`scan`] reads with the same members in the same
/// order: the values are read by the same [`scalar`], and a string over
/// [`MAX_PLAIN_STRING`] is refused here as there.
pub(crate) struct Cursor<'v> {
    text: &'v str,
    at: usize,
}

impl<'v> Cursor<'v> {
    /// At the first member of `text`, if it opens an object.
    pub(crate) fn open(text: &'v str) -> Option<Self> {
        (text.as_bytes().first() == Some(&b'{')).then_some(Cursor { text, at: 1 })
    }

    /// Whether the next member's key is `name`.
    pub(crate) fn next_is(&self, name: &str) -> bool {
        self.key_end(name).is_some()
    }

    /// The next member's value, if its key is `name` and its value a scalar other than
    /// `null` (which validation takes as an absent field: the general reading says so).
    // Inlined with `scalar` into the reader of the expected order: a value returned through
    // memory was copied out at once with a wider load than its stores, which stalled (store
    // forwarding fails) at every member: a tenth of decoding a heartbeat.
    #[inline(always)]
    pub(crate) fn member(&mut self, name: &str) -> Option<Scalar<'v>> {
        let after_key = self.key_end(name)?;
        let (value, end) = scalar(self.text, after_key)?;
        match value {
            Scalar::Null => return None,
            Scalar::Str(s) if s.len() > MAX_PLAIN_STRING => return None,
            _ => {}
        }
        self.at = end;
        Some(value)
    }

    /// Whether the object closes here and nothing follows it.
    pub(crate) fn close(self) -> bool {
        self.text.as_bytes().get(self.at..) == Some(&b"}"[..])
    }

    /// Where the value of the next member starts, if its key is `name`: a comma first unless
    /// it is the first member, then `"name":`.
    fn key_end(&self, name: &str) -> Option<usize> {
        let b = self.text.as_bytes();
        let mut i = self.at;
        if i > 1 {
            if b.get(i) != Some(&b',') {
                return None;
            }
            i += 1;
        }
        let key = i + 1..i + 1 + name.len();
        let quoted = b.get(i) == Some(&b'"') && b.get(key.end..key.end + 2) == Some(&b"\":"[..]);
        (quoted && crate::validate::same_key(self.text.get(key.clone())?, name))
            .then_some(key.end + 2)
    }
}

/// The bit of `seen` in [`scan`] for a key: equal keys have equal bits.
fn key_bit(key: &str) -> u64 {
    let last = key.as_bytes().last().copied().unwrap_or(0) as usize;
    1 << ((key.len() * 8 + last) % 64)
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// The string whose text starts at `start` (after its opening quote) and the index after its
/// closing quote, if it has no escape and no control character.
fn plain_string(text: &str, start: usize) -> Option<(&str, usize)> {
    let rest = text.as_bytes().get(start..)?;
    let len = string_end(rest)?;
    if rest[len] != b'"' {
        return None;
    }
    // `start` and `start + len` sit at ASCII bytes, so both are character boundaries.
    Some((text.get(start..start + len)?, start + len + 1))
}

/// The first `"`, `\\` or control character in `b`: eight bytes at a time (the strings
/// of events are mostly ids and names, and the byte-at-a-time search was most of this pass).
fn string_end(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x;
    let mut i = 0;
    while let Some(word) = b.get(i..i + 8) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let w = u64::from_le_bytes(bytes);
        // A byte is flagged where it is a quote, a backslash or under 0x20. A borrow can
        // flag a byte above a true match only, so the lowest flag is always a true one.
        let flags = (zero_bytes(w ^ (ONES * u64::from(b'"')))
            | zero_bytes(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w))
            & HIGHS;
        if flags != 0 {
            return Some(i + (flags.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|p| i + p)
}

// See `Cursor::member`.
#[inline(always)]
fn scalar(text: &str, i: usize) -> Option<(Scalar<'_>, usize)> {
    let b = text.as_bytes();
    let literal =
        |word: &[u8], v: Scalar<'static>| b[i..].starts_with(word).then_some((v, i + word.len()));
    match b.get(i)? {
        b'"' => plain_string(text, i + 1).map(|(s, end)| (Scalar::Str(s), end)),
        b't' => literal(b"true", Scalar::Bool(true)),
        b'f' => literal(b"false", Scalar::Bool(false)),
        b'n' => literal(b"null", Scalar::Null),
        b'-' | b'0'..=b'9' => {
            let end = number_end(b, i)?;
            Some((Scalar::Number(text.get(i..end)?), end))
        }
        _ => None,
    }
}

/// The end of the number starting at `i`, by RFC 8259's grammar (the general parser's).
fn number_end(b: &[u8], mut i: usize) -> Option<usize> {
    let digits = |mut i: usize| {
        let start = i;
        while let Some(b'0'..=b'9') = b.get(i) {
            i += 1;
        }
        (i > start).then_some(i)
    };
    if b[i] == b'-' {
        i += 1;
    }
    i = match b.get(i)? {
        b'0' => i + 1,
        b'1'..=b'9' => digits(i)?,
        _ => return None,
    };
    if b.get(i) == Some(&b'.') {
        i = digits(i + 1)?;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        i = digits(i)?;
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{parse, Value};

    /// The general parser's members as [`scan`] reports them.
    fn general(text: &str) -> Option<Vec<(String, String)>> {
        let Ok(Value::Object(members)) = parse(text) else {
            return None;
        };
        let shown = |v: &Value<'_>| match v {
            Value::Null => Some("null".to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(format!("#{n}")),
            Value::String(s) => Some(format!("\"{s}")),
            _ => None,
        };
        members
            .iter()
            .map(|(k, v)| Some((k.to_string(), shown(v)?)))
            .collect()
    }

    fn flat(text: &str) -> Option<Vec<(String, String)>> {
        let mut members = NO_MEMBERS;
        let n = scan(text, &mut members)?;
        Some(
            members[..n]
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Scalar::Null => "null".to_string(),
                        Scalar::Bool(b) => b.to_string(),
                        Scalar::Number(n) => format!("#{n}"),
                        Scalar::Str(s) => format!("\"{s}"),
                        Scalar::Nested(_) => unreachable!("scan keeps scalars only"),
                    };
                    (k.to_string(), v)
                })
                .collect(),
        )
    }

    #[test]
    fn reads_flat_objects_as_the_general_parser_does() {
        for text in [
            r#"{"a":1,"b":"x","c":true,"d":false,"e":null,"f":-0.5e+3,"g":"é"}"#,
            " { \"a\" : 1 ,\t\"b\"\r\n:\"\" } ",
            "{}",
            r#"{"n":0,"m":-0,"k":1E9,"j":12.50}"#,
        ] {
            assert_eq!(flat(text), general(text), "{text}");
            assert!(flat(text).is_some(), "{text}");
        }
    }

    /// Refused: not JSON (the general parser names why), or JSON this pass does not read.
    #[test]
    fn refuses_what_it_does_not_read() {
        for text in [
            "",
            "[1]",
            "\"x\"",
            "{",
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":1e}"#,
            r#"{"a":tru}"#,
            r#"{"a":nul}"#,
            r#"{"a":"b\"c"}"#,
            r#"{"a\u0062":1}"#,
            "{\"a\":\"b\nc\"}",
            r#"{"a":1}x"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a":[1]}"#,
            r#"{"a":{}}"#,
            r#"{'a':1}"#,
            r#"{"a":NaN}"#,
            r#"{"a" 1}"#,
            r#"{"a":1 "b":2}"#,
        ] {
            assert_eq!(flat(text), None, "{text:?}");
        }
        let many: Vec<String> = (0..=MAX_MEMBERS).map(|i| format!("\"k{i}\":{i}")).collect();
        let text = format!("{{{}}}", many.join(","));
        assert!(general(&text).is_some());
        assert_eq!(flat(&text), None);
    }

    /// The word-at-a-time search finds what the byte-at-a-time one finds, on every byte
    /// value at every position of strings around a word's length, after any prefix.
    #[test]
    fn string_end_finds_the_first_special_byte() {
        let simple = |b: &[u8]| b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        for len in 0..20 {
            for at in 0..len {
                for special in 0..=255u8 {
                    let mut b = vec![b'a'; len];
                    b[at] = special;
                    // Bytes around the ones a borrow could disturb.
                    if at + 1 < len {
                        b[at + 1] = b'"';
                    }
                    if at > 0 {
                        b[at - 1] = 0x80 | special;
                    }
                    assert_eq!(string_end(&b), simple(&b), "{b:?}");
                }
            }
        }
    }

    /// Every prefix of valid lines and every single-byte change of them: the pass accepts
    /// only what the general parser accepts, with the same members.
    #[test]
    fn never_accepts_what_the_general_parser_reads_differently() {
        let base = r#"{"event_id":"e-1","type":"platform.usage","occurred_at":"2023-04-20T08:00:00+08:00","n":-12.5e-3,"ok":true,"x":null}"#;
        let replacements = b"\"\\{}[]:,-+.eE0123456789 \ttfn\x01a";
        let mut checked = 0;
        for at in 0..base.len() {
            let prefix = &base[..at];
            if let Some(members) = flat(prefix) {
                assert_eq!(Some(members), general(prefix), "{prefix:?}");
            }
            for &c in replacements.iter() {
                let mut bytes = base.as_bytes().to_vec();
                bytes[at] = c;
                let Ok(text) = String::from_utf8(bytes) else {
                    continue;
                };
                if let Some(members) = flat(&text) {
                    assert_eq!(Some(members), general(&text), "{text:?}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 100, "only {checked} changed lines were read");
    }
}
