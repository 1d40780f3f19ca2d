//! The indicator operators on their own, on the generated district (seed 1, scale 0.1):
//! events into deltas (the entity operator, `Entities::apply`) and deltas into points (the
//! series operator: `Group::apply` for every delta, then `Group::close` through the end).
//!
//! Run: `cargo bench -p paceline-dataflow --bench operators`.

// criterion_group! defines an undocumented public function.
#![allow(missing_docs)]

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use paceline_dataflow::entities::Entities;
use paceline_dataflow::intervals::Delta;
use paceline_dataflow::series::Group;
use paceline_model::config::Config;
use paceline_model::{Event, Indicator};

// As in the binary: the figures are for the allocator paceline runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The district's valid events, in the generator's order.
fn events() -> Vec<Event> {
    paceline_generate::generate(1, 0.1)
        .iter()
        .filter_map(|line| paceline_decode::decode(line.as_bytes(), None).ok())
        .collect()
}

fn to_deltas(config: &Config, events: Vec<Event>) -> Vec<Delta> {
    let mut entities = Entities::new(config.filing_lag());
    entities.use_ticks(|i| config.cadence(i));
    let mut out = Vec::new();
    // Netted per epoch of 8192 events, as the dataflow does.
    for (i, e) in events.into_iter().enumerate() {
        entities.apply(e);
        if i % 8192 == 8191 {
            entities.drain_into(&mut out);
        }
    }
    entities.drain_into(&mut out);
    out
}

fn to_points(config: &Config, deltas: &[Delta]) -> usize {
    let mut groups: BTreeMap<Indicator, Group> = BTreeMap::new();
    for d in deltas {
        let g = d.slot.group;
        groups
            .entry(g)
            .or_insert_with(|| {
                let horizon = config.streams.get(g.stream()).horizon();
                Group::new(g, config.cadence(g), horizon, config.plan_specs())
            })
            .apply(d);
    }
    let first = deltas.iter().map(|d| d.key).min().unwrap_or(0);
    let last = deltas.iter().map(|d| d.key).max().unwrap_or(0);
    let mut points = Vec::new();
    for g in groups.values_mut() {
        g.set_earliest(first);
        g.close(last, &mut points);
    }
    points.len()
}

fn operators(c: &mut Criterion) {
    let config = Config::default();
    let events = events();
    let deltas = to_deltas(&config, events.clone());
    assert!(!deltas.is_empty(), "the district makes deltas");
    let mut group = c.benchmark_group("operators");
    group.sample_size(10);
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("entities/events", |b| {
        b.iter_batched(
            || events.clone(),
            |events| to_deltas(&config, events).len(),
            BatchSize::LargeInput,
        )
    });
    // Per event of the district, not per delta: how many deltas an event makes is the
    // entity operator's netting, so a time per delta does not compare across changes of it
    // (netting per epoch cut the deltas fivefold: the time per delta doubled while the run
    // took half as long).
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("series/events", |b| {
        b.iter(|| {
            let points = to_points(&config, &deltas);
            assert!(points > 0, "closing makes points");
            points
        })
    });
    group.finish();
}

criterion_group!(benches, operators);
criterion_main!(benches);
