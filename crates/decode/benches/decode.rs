//! Decoding throughput per event type: the generated district's lines of each type decoded
//! and validated (`decode_at`), reported per event and in bytes per second.
//!
//! Run: `cargo bench -p paceline-decode --bench decode`.

// criterion_group! defines an undocumented public function.
#![allow(missing_docs)]

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use paceline_decode::decode_at;
use paceline_model::Nanos;

// As in the binary: the figures are for the allocator paceline runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Up to this many lines of each type, taken from the generated district in order.
const LINES_PER_TYPE: usize = 4096;

/// The generated district's valid lines grouped by their `type`.
fn lines_by_type() -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut by_type: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for line in paceline_generate::generate(1, 0.1) {
        let value: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(_) => continue,
        };
        let Some(ty) = value.get("type").and_then(|t| t.as_str()) else {
            continue;
        };
        let lines = by_type.entry(ty.to_string()).or_default();
        // The generator mixes in invalid lines; the figures are for valid events.
        if lines.len() < LINES_PER_TYPE && decode_at(line.as_bytes(), None, Nanos::MAX).is_ok() {
            lines.push(line.into_bytes());
        }
    }
    by_type
}

fn decode_per_type(c: &mut Criterion) {
    let latest: Nanos = Nanos::MAX;
    let mut group = c.benchmark_group("decode");
    // A type of which every generated line is invalid (an unknown type) has nothing to time.
    for (ty, lines) in lines_by_type().into_iter().filter(|(_, l)| !l.is_empty()) {
        let bytes: usize = lines.iter().map(Vec::len).sum();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_with_input(BenchmarkId::new("bytes", &ty), &lines, |b, lines| {
            b.iter(|| {
                let mut accepted = 0usize;
                for line in lines {
                    accepted += usize::from(decode_at(line, None, latest).is_ok());
                }
                assert_eq!(accepted, lines.len(), "every generated line decodes");
            })
        });
        group.throughput(Throughput::Elements(lines.len() as u64));
        group.bench_with_input(BenchmarkId::new("events", &ty), &lines, |b, lines| {
            b.iter(|| {
                for line in lines {
                    criterion::black_box(decode_at(line, None, latest).ok());
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode_per_type);
criterion_main!(benches);
