//! The JSON Schemas of `docs/schema/` against the decoder, both ways: every event the
//! decoder accepts (the spec's examples, a generated district) validates, and every
//! schema-level rejection the decoder makes (a missing or null field, a wrong JSON type,
//! an unknown enumeration value, an unknown type) fails validation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jsonschema::{Registry, Validator};
use paceline_decode::{decode, Reason};
use serde_json::{json, Value};

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/schema")
}

fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One validator per event type, and one for `event.schema.json` (any type).
struct Schemas {
    by_type: BTreeMap<String, (Value, Validator)>,
    any: Validator,
}

fn schemas() -> Schemas {
    let mut raw = BTreeMap::new();
    for entry in std::fs::read_dir(docs()).expect("docs/schema") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if let Some(ty) = name.strip_suffix(".schema.json") {
            raw.insert(ty.to_string(), load(&path));
        }
    }
    let event = raw.remove("event").expect("event.schema.json");
    let mut registry = Registry::new();
    for schema in raw.values() {
        let id = schema["$id"].as_str().expect("$id").to_string();
        registry = registry.add(id, schema.clone()).expect("a resource");
    }
    let registry = registry.prepare().expect("the registry");
    let any = jsonschema::options()
        .with_registry(&registry)
        .build(&event)
        .expect("event.schema.json compiles");
    let by_type = raw
        .into_iter()
        .map(|(ty, schema)| {
            let v = jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{ty}: {e}"));
            assert_eq!(
                schema["properties"]["type"]["const"],
                json!(ty),
                "{ty}: its type"
            );
            (ty, (schema, v))
        })
        .collect();
    Schemas { by_type, any }
}

impl Schemas {
    fn validate(&self, event: &Value) -> (bool, bool) {
        let ty = event["type"].as_str().unwrap_or_default();
        let own = self.by_type.get(ty).is_some_and(|(_, v)| v.is_valid(event));
        (own, self.any.is_valid(event))
    }
}

fn spec_examples() -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/spec-examples.jsonl");
    std::fs::read(path)
        .expect("spec examples")
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

#[test]
fn there_is_a_schema_for_every_event_type() {
    let s = schemas();
    let types: Vec<&str> = s.by_type.keys().map(String::as_str).collect();
    assert_eq!(types.len(), 11, "{types:?}");
    // Each type's schema names exactly the decoder's required fields: a minimal event made
    // of them alone is accepted by both.
    for (ty, (schema, v)) in &s.by_type {
        let required = schema["required"].as_array().expect("required");
        let example = spec_examples()
            .into_iter()
            .map(|l| serde_json::from_slice::<Value>(&l).unwrap_or(Value::Null))
            .find(|e| e["type"] == json!(ty))
            .unwrap_or_else(|| panic!("the spec has an example of {ty}"));
        let minimal: serde_json::Map<String, Value> = required
            .iter()
            .map(|k| {
                let k = k.as_str().expect("a name");
                (k.to_string(), example[k].clone())
            })
            .collect();
        let minimal = Value::Object(minimal);
        assert!(v.is_valid(&minimal), "{ty}: minimal event validates");
        let bytes = serde_json::to_vec(&minimal).expect("JSON");
        assert!(
            decode(&bytes, None).is_ok(),
            "{ty}: the decoder accepts {minimal}"
        );
    }
}

#[test]
fn every_accepted_event_validates() {
    let s = schemas();
    let mut lines = spec_examples();
    lines.extend(
        paceline_generate::generate(3, 0.02)
            .into_iter()
            .map(String::into_bytes),
    );
    let mut checked = 0;
    for line in &lines {
        if decode(line, None).is_err() {
            continue;
        }
        let event: Value = serde_json::from_slice(line).expect("accepted events are JSON");
        let (own, any) = s.validate(&event);
        assert!(own && any, "accepted but invalid: {event}");
        checked += 1;
    }
    assert!(checked > 10_000, "checked {checked} events");
}

/// A value of another JSON type than `v`'s.
fn wrong_type(v: &Value) -> Value {
    match v {
        Value::String(_) => json!(5),
        Value::Bool(_) => json!("true"),
        Value::Number(_) => json!("5"),
        _ => json!(true),
    }
}

#[test]
fn every_schema_level_rejection_fails_validation() {
    let s = schemas();
    let mut cases = 0;
    for line in spec_examples() {
        let Ok(accepted) = decode(&line, None) else {
            continue;
        };
        let event: Value = serde_json::from_slice(&line).expect("JSON");
        let ty = event["type"].as_str().expect("type").to_string();
        let (schema, _) = &s.by_type[&ty];
        let required: Vec<String> = schema["required"]
            .as_array()
            .expect("required")
            .iter()
            .filter_map(|k| k.as_str().map(String::from))
            .filter(|k| k != "type")
            .collect();
        drop(accepted);
        let mut check = |mutated: Value, reason: Reason, what: &str| {
            let bytes = serde_json::to_vec(&mutated).expect("JSON");
            let got = decode(&bytes, None).map(|_| ()).map_err(|r| r.reason);
            assert_eq!(got, Err(reason), "{ty} {what}: the decoder's verdict");
            let (own, any) = s.validate(&mutated);
            assert!(
                !own && !any,
                "{ty} {what}: rejected by the decoder, valid by the schema"
            );
            cases += 1;
        };
        for field in &required {
            let mut m = event.clone();
            m.as_object_mut().expect("object").remove(field);
            check(m, Reason::MissingField, &format!("without {field}"));
            let mut m = event.clone();
            m[field.as_str()] = Value::Null;
            check(m, Reason::MissingField, &format!("{field}: null"));
            let mut m = event.clone();
            m[field.as_str()] = wrong_type(&event[field.as_str()]);
            check(m, Reason::WrongType, &format!("{field} of a wrong type"));
            let is_enum = schema["properties"][field.as_str()]["enum"].is_array();
            if is_enum || field == "period" {
                let mut m = event.clone();
                m[field.as_str()] = json!("no_such_value");
                check(m, Reason::UnknownValue, &format!("{field}: unknown value"));
            }
        }
        let mut m = event.clone();
        m["source"] = json!(42);
        check(m, Reason::WrongType, "source of a wrong type");
        let mut m = event.clone();
        m["occurred_at"] = json!("2023-04-01 09:30:00");
        check(m, Reason::BadTimestamp, "occurred_at without T and offset");
        let mut m = event.clone();
        m["type"] = json!("enterprise.merged");
        let bytes = serde_json::to_vec(&m).expect("JSON");
        assert_eq!(
            decode(&bytes, None).map(|_| ()).map_err(|r| r.reason),
            Err(Reason::UnknownType)
        );
        assert!(!s.any.is_valid(&m), "{ty}: unknown type is invalid");
    }
    assert!(cases > 150, "{cases} cases");
}

#[test]
fn documented_examples_are_accepted_and_valid() {
    // The JSON examples of docs/events.md are what producers copy.
    let s = schemas();
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/events.md"))
            .expect("docs/events.md");
    let mut n = 0;
    let mut in_block = false;
    for line in text.lines() {
        match line.trim() {
            "```json" => in_block = true,
            "```" => in_block = false,
            l if in_block && l.starts_with('{') => {
                let event = decode(l.as_bytes(), None)
                    .unwrap_or_else(|r| panic!("docs/events.md example rejected ({r:?}): {l}"));
                drop(event);
                let v: Value = serde_json::from_str(l).expect("JSON");
                assert_eq!(s.validate(&v), (true, true), "{l}");
                n += 1;
            }
            _ => {}
        }
    }
    assert!(n >= 3, "{n} examples");
}
