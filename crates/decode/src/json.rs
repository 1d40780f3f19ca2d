//! A strict JSON parser (RFC 8259) into a borrowed tree, made for event validation.
//!
//! Strings without escapes borrow from the input; numbers keep their text, so that the
//! validator can tell `5` from `5.0` and `1e999` from a parse error. Objects keep their
//! members in order and a repeated key (after unescaping) is an error at any depth. The
//! parser reports the deepest nesting it met ([`parse_nested`]) and stops at a depth limit
//! of its own, so it never overflows the stack.

use std::borrow::Cow;

/// A parsed JSON value borrowing from the input text.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as written.
    Number(&'a str),
    /// A string, unescaped.
    String(Cow<'a, str>),
    /// An array.
    Array(Vec<Value<'a>>),
    /// An object, members in order (keys are unique).
    Object(Vec<(Cow<'a, str>, Value<'a>)>),
}

impl<'a> Value<'a> {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Why text is not JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON at byte {at}: {what}")]
pub struct JsonError {
    /// Byte offset.
    pub at: usize,
    /// What was wrong.
    pub what: &'static str,
}

const PARSER_DEPTH_LIMIT: usize = 128;
/// Room reserved for the members of the top-level object: more than any event type has.
const TOP_LEVEL_MEMBERS: usize = 12;

/// Parses one JSON text (surrounding whitespace allowed).
pub fn parse(text: &str) -> Result<Value<'_>, JsonError> {
    parse_nested(text).map(|(v, _)| v)
}

/// [`parse`], also giving the deepest nesting of arrays and objects (a top-level object is
/// 1): the bracket depth that [`crate::prescan`] counts, on text that is JSON.
pub fn parse_nested(text: &str) -> Result<(Value<'_>, usize), JsonError> {
    let mut p = Parser {
        s: text,
        b: text.as_bytes(),
        i: 0,
        deepest: 0,
    };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != p.b.len() {
        return Err(p.err("trailing characters"));
    }
    Ok((v, p.deepest))
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    deepest: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, what: &'static str) -> JsonError {
        JsonError { at: self.i, what }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, JsonError> {
        if depth >= PARSER_DEPTH_LIMIT {
            return Err(self.err("nested too deeply"));
        }
        match self.b.get(self.i) {
            None => Err(self.err("unexpected end")),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("unexpected character")),
        }
    }

    fn literal(&mut self, word: &str, v: Value<'a>) -> Result<Value<'a>, JsonError> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err("invalid literal"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.b.get(self.i) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<Value<'a>, JsonError> {
        let start = self.i;
        if self.b[self.i] == b'-' {
            self.i += 1;
        }
        match self.b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("invalid number")),
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.err("invalid fraction"));
            }
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.b.get(self.i) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("invalid exponent"));
            }
        }
        Ok(Value::Number(&self.s[start..self.i]))
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let c = *self
                .b
                .get(self.i)
                .ok_or_else(|| self.err("short \\u escape"))?;
            let d = (c as char)
                .to_digit(16)
                .ok_or_else(|| self.err("bad \\u escape"))?;
            v = v * 16 + d;
            self.i += 1;
        }
        Ok(v)
    }

    fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        self.i += 1; // opening quote
        let start = self.i;
        // Fast path: no escapes.
        loop {
            match self.b.get(self.i) {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    let s = &self.s[start..self.i];
                    self.i += 1;
                    return Ok(Cow::Borrowed(s));
                }
                Some(b'\\') => break,
                Some(&c) if c < 0x20 => return Err(self.err("control character in string")),
                Some(_) => self.i += 1,
            }
        }
        let mut out = String::with_capacity(self.i - start + 16);
        out.push_str(&self.s[start..self.i]);
        loop {
            let seg = self.i;
            while let Some(&c) = self.b.get(self.i) {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            out.push_str(&self.s[seg..self.i]);
            match self.b.get(self.i) {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.i += 1;
                    let e = *self
                        .b
                        .get(self.i)
                        .ok_or_else(|| self.err("unterminated escape"))?;
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                if self.b.get(self.i) != Some(&b'\\')
                                    || self.b.get(self.i + 1) != Some(&b'u')
                                {
                                    return Err(self.err("lone surrogate"));
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.err("lone surrogate"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return Err(self.err("lone surrogate"));
                            } else {
                                hi
                            };
                            out.push(char::from_u32(cp).ok_or_else(|| self.err("bad code point"))?);
                        }
                        _ => return Err(self.err("unknown escape")),
                    }
                }
                Some(_) => return Err(self.err("control character in string")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value<'a>, JsonError> {
        self.i += 1;
        self.deepest = self.deepest.max(depth + 1);
        let mut items = Vec::new();
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth + 1)?);
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    items.shrink_to_fit();
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.err("expected , or ]")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value<'a>, JsonError> {
        self.i += 1;
        self.deepest = self.deepest.max(depth + 1);
        // Nested objects grow as members come, never reserved ahead: `[{},{},…]` must not
        // reserve room for members that are not there (memory stays a small multiple of the
        // input). The one top-level object (an event's envelope and fields) starts with room
        // for an event's members, saving the regrowth on every line.
        let mut members: Vec<(Cow<'a, str>, Value<'a>)> = if depth == 0 {
            Vec::with_capacity(TOP_LEVEL_MEMBERS)
        } else {
            Vec::new()
        };
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.ws();
            if self.b.get(self.i) != Some(&b'"') {
                return Err(self.err("expected a key"));
            }
            let key = self.string()?;
            self.ws();
            if self.b.get(self.i) != Some(&b':') {
                return Err(self.err("expected :"));
            }
            self.i += 1;
            self.ws();
            let v = self.value(depth + 1)?;
            members.push((key, v));
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    if has_repeated_key(&members) {
                        return Err(self.err("repeated key"));
                    }
                    // Growth rounds up (at least 4 members): give back what a small
                    // nested object does not use.
                    if depth > 0 {
                        members.shrink_to_fit();
                    }
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.err("expected , or }")),
            }
        }
    }
}

fn has_repeated_key(members: &[(Cow<'_, str>, Value<'_>)]) -> bool {
    if members.len() <= 16 {
        members
            .iter()
            .enumerate()
            .any(|(i, (k, _))| members[..i].iter().any(|(k2, _)| k2 == k))
    } else {
        let mut keys: Vec<&str> = members.iter().map(|(k, _)| k.as_ref()).collect();
        keys.sort_unstable();
        keys.windows(2).any(|w| w[0] == w[1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Heap bytes a parsed value holds (reserved capacity included).
    fn heap_bytes(v: &Value<'_>) -> usize {
        let cow = |c: &Cow<'_, str>| match c {
            Cow::Owned(s) => s.capacity(),
            Cow::Borrowed(_) => 0,
        };
        match v {
            Value::String(s) => cow(s),
            Value::Array(items) => {
                items.capacity() * std::mem::size_of::<Value<'_>>()
                    + items.iter().map(heap_bytes).sum::<usize>()
            }
            Value::Object(members) => {
                members.capacity() * std::mem::size_of::<(Cow<'_, str>, Value<'_>)>()
                    + members
                        .iter()
                        .map(|(k, v)| cow(k) + heap_bytes(v))
                        .sum::<usize>()
            }
            _ => 0,
        }
    }

    /// No input makes the parser hold more than a small multiple of its own size.
    #[test]
    fn memory_is_a_small_multiple_of_the_input() {
        let repeat = |unit: &str, n: usize| format!("[{}]", vec![unit; n].join(","));
        for text in [
            repeat("{}", 21_000),
            repeat("[]", 21_000),
            repeat("0", 32_000),
            repeat(r#"{"a":{}}"#, 7_000),
            repeat(r#""é""#, 8_000),
            format!(r#"{{"k":[{}]}}"#, vec!["{\"x\":1}"; 8_000].join(",")),
        ] {
            let v = parse(&text).unwrap();
            let held = heap_bytes(&v);
            assert!(
                held <= 24 * text.len(),
                "{} input bytes hold {held} bytes ({}…)",
                text.len(),
                &text[..12]
            );
        }
    }

    #[test]
    fn parses_what_serde_json_parses() {
        for text in [
            r#"{"a":1,"b":[true,false,null],"c":{"d":"e\u00e9\ud83d\ude00\n"},"n":-0.5e+3}"#,
            "  [ ]  ",
            "\"x\"",
            "0",
            r#"{"k":"\"\\\/\b\f\r\t"}"#,
        ] {
            let ours = parse(text).unwrap();
            let theirs: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(to_serde(&ours), theirs, "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_json() {
        for text in [
            "",
            "{",
            "{\"a\":}",
            "[1,]",
            "{\"a\":1,}",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "tru",
            "nul",
            "\"\\x\"",
            "\"\\ud800\"",
            "\"\\udc00x\"",
            "\"a\nb\"",
            "{\"a\":1}x",
            "{'a':1}",
            "NaN",
            "{\"a\":1,\"a\":2}",
            "[{\"x\":{\"y\":1,\"y\":1}}]",
        ] {
            assert!(parse(text).is_err(), "{text:?} should fail");
        }
    }

    #[test]
    fn keeps_number_text() {
        let v = parse(r#"{"i":5,"f":5.0,"h":1e999}"#).unwrap();
        assert_eq!(v.get("i"), Some(&Value::Number("5")));
        assert_eq!(v.get("f"), Some(&Value::Number("5.0")));
        assert_eq!(v.get("h"), Some(&Value::Number("1e999")));
    }

    fn to_serde(v: &Value<'_>) -> serde_json::Value {
        match v {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Number(n) => serde_json::from_str(n).unwrap(),
            Value::String(s) => s.to_string().into(),
            Value::Array(a) => a.iter().map(to_serde).collect(),
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| (k.to_string(), to_serde(v)))
                .collect(),
        }
    }
}
