//! Randomized comparison of `replay` with the brute-force model on many small generated
//! event sets: in order, shuffled beyond the out-of-orderness (corrections), with exact
//! duplicates, with 1 and 4 workers, and disordered beyond the horizons with repeated ids
//! of other content (the model admitting by the contract's rules). Outputs must be
//! equivalent (docs/outputs.md).

use std::collections::HashSet;
use std::path::PathBuf;

use paceline_generate::{rfc3339, Rng};
use paceline_model::config::Config;
use paceline_model::time::{days_from_civil, tick_after, DAY, HOUR, SECOND};
use paceline_model::{Event, Nanos, SeriesKey, Stream};
use paceline_oracle::{equiv, lp, model};
use paceline_runtime::{replay, ReplayOptions, ReplaySummary};

struct Gen {
    rng: Rng,
    n: u64,
    lines: Vec<(Nanos, String)>,
}

impl Gen {
    fn id(&mut self) -> String {
        self.n += 1;
        format!("ev-{}", self.n)
    }
    fn push(&mut self, at: Nanos, body: String) {
        let id = self.id();
        let offset = [480, 0, -300][self.rng.below(3) as usize];
        let line = format!(
            r#"{{"event_id":"{id}","occurred_at":"{}",{body}}}"#,
            rfc3339(at, offset)
        );
        self.lines.push((at, line));
    }
}

// Every value of each enumeration (docs/events.md): each indicator by cluster, field, kind
// and region gets series of its own, key regions and `other` both.
const CLUSTERS: [&str; 8] = [
    "cybersecurity",
    "urban_technology",
    "digital_design",
    "digital_content",
    "blockchain",
    "metaverse",
    "other_digital",
    "non_digital",
];
const FIELDS: [&str; 8] = [
    "digital_cultural_tourism",
    "digital_finance",
    "digital_consumption",
    "digital_trade",
    "digital_government_services",
    "smart_buildings",
    "intelligent_manufacturing",
    "digital_agriculture",
];
const REGIONS: [&str; 5] = [
    "administrative_office_area",
    "canal_business_district",
    "zhangjiawan_design_town",
    "cultural_tourism_area",
    "other",
];
const KINDS: [&str; 4] = [
    "network_communication",
    "government_big_data_platform",
    "industrial_internet_platform",
    "sme_public_service_platform",
];

/// A random event set. `long`: 600 days from 2021-11; otherwise 4 days in 2024.
fn events(seed: u64, long: bool) -> Vec<(Nanos, String)> {
    let mut g = Gen {
        rng: Rng::new(seed),
        n: 0,
        lines: Vec::new(),
    };
    let (t0, span) = if long {
        (days_from_civil(2021, 11, 1) * DAY, 600 * DAY)
    } else {
        (days_from_civil(2024, 3, 1) * DAY, 4 * DAY)
    };
    let count = 40 + g.rng.below(60);
    for _ in 0..count {
        // Times on a coarse grid so that ties and tick-exact events happen.
        let grid = if long { 6 * HOUR } else { 15 * 60 * SECOND };
        let at = t0
            + (g.rng.below((span / grid) as u64) as i64) * grid
            + if g.rng.chance(0.3) {
                0
            } else {
                g.rng.below(grid as u64) as i64
            };
        let e = format!("E{}", g.rng.below(8));
        let s = format!("S{}", g.rng.below(5));
        let p = format!("P{}", g.rng.below(4));
        let body = match g.rng.below(14) {
            0 | 1 => format!(
                r#""type":"enterprise.registered","enterprise_id":"{e}","name":"n","cluster":"{}","region":"{}","sme":{}"#,
                g.rng.pick(&CLUSTERS),
                g.rng.pick(&REGIONS),
                g.rng.chance(0.5)
            ),
            2 => format!(r#""type":"enterprise.deregistered","enterprise_id":"{e}""#),
            3 => format!(
                r#""type":"enterprise.valuation","enterprise_id":"{e}","valuation_cny":{}"#,
                [5e8, 1e9, 2.5e9][g.rng.below(3) as usize]
            ),
            4 => format!(
                r#""type":"enterprise.certification","enterprise_id":"{e}","certification":"srdi","action":"{}""#,
                if g.rng.chance(0.7) {
                    "granted"
                } else {
                    "revoked"
                }
            ),
            5 | 6 => {
                let q = if long {
                    2021 * 4 + 1 + g.rng.below(7) as i32
                } else {
                    2023 * 4 + g.rng.below(4) as i32
                };
                format!(
                    r#""type":"enterprise.financials","enterprise_id":"{e}","period":"{}-Q{}","revenue_cny":{},"added_value_cny":{},"revision":{}"#,
                    q / 4,
                    q % 4 + 1,
                    g.rng.below(1000) as f64 * 1.5e6 + 0.1,
                    (g.rng.below(200) as f64 - 40.0) * 1e5 + 0.3,
                    g.rng.below(3)
                )
            }
            7 => format!(
                r#""type":"enterprise.cloud_migration","enterprise_id":"{e}","level":"basic""#
            ),
            8 => format!(
                r#""type":"platform.heartbeat","platform_id":"{p}","platform_kind":"{}","status":"{}","interval_s":{}"#,
                g.rng.pick(&KINDS),
                ["up", "degraded", "down"][g.rng.below(3) as usize],
                60 + g.rng.below(600)
            ),
            9 => format!(
                r#""type":"platform.usage","platform_id":"{p}","platform_kind":"{}","api_calls":{},"records_shared":{},"connected_enterprises":{}"#,
                g.rng.pick(&KINDS),
                g.rng.below(100),
                g.rng.below(100),
                g.rng.below(50)
            ),
            10 | 11 => format!(
                r#""type":"scenario.stage","scenario_id":"{s}","name":"n","field":"{}","region":"{}","stage":"{}""#,
                g.rng.pick(&FIELDS),
                g.rng.pick(&REGIONS),
                ["planned", "piloting", "live", "live", "retired"][g.rng.below(5) as usize]
            ),
            12 => format!(
                r#""type":"scenario.usage","scenario_id":"{s}","active_users":{},"transactions":{},"value_cny":{}"#,
                g.rng.below(100),
                g.rng.below(100),
                g.rng.below(1000) as f64 / 8.0 + 0.1
            ),
            _ => format!(
                r#""type":"project.stage","project_id":"{p}","name":"n","project_kind":"{}","region":"{}","stage":"{}""#,
                ["data_zone", "benchmark_project", "demonstration_project"]
                    [g.rng.below(3) as usize],
                g.rng.pick(&REGIONS),
                ["planned", "underway", "delivered", "cancelled"][g.rng.below(4) as usize]
            ),
        };
        g.push(at, body);
    }
    g.lines.sort_by_key(|(at, _)| *at);
    g.lines
}

fn config(long: bool) -> Config {
    let mut c = Config::default();
    if long {
        for ind in paceline_model::Indicator::ALL {
            c.indicators.cadence_s.insert(ind.name().into(), 86_400);
        }
        // Deadlines inside the 600 days, so that goals are judged (the revenue ones 45
        // days later), some met and some missed; targets the small sets can reach.
        for (i, item) in c.plan.items.iter_mut().enumerate() {
            item.start = "2021-12-01T00:00:00+08:00".into();
            item.deadline =
                ["2022-09-01T00:00:00+08:00", "2023-01-01T00:00:00+08:00"][i % 2].into();
            item.target = match item.series.as_str() {
                s if s.contains("revenue") => 2e8,
                "digital_economy_added_value_growth" => 0.05,
                _ => 1.0 + (i % 3) as f64,
            };
        }
    }
    c
}

fn run(
    config: &Config,
    lines: &[String],
    workers: usize,
    tag: &str,
) -> (lp::Points, lp::Verdicts, ReplaySummary) {
    let dir = std::env::temp_dir().join(format!("paceline-compare-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let input: PathBuf = dir.join("in.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").expect("input written");
    let mut config = config.clone();
    config.dataflow.workers = workers;
    config.dataflow.epoch_events = 7;
    let opts = ReplayOptions {
        inputs: vec![input],
        output: dir.join("out.lp"),
        dead_letters: dir.join("dl.jsonl"),
    };
    let summary = replay(&config, &opts).expect("replay runs");
    let (points, verdicts) =
        lp::parse_all(&std::fs::read_to_string(&opts.output).expect("output readable"))
            .expect("output is line protocol");
    std::fs::remove_dir_all(&dir).expect("temporary directory removed");
    (points, verdicts, summary)
}

fn accepted(lines: &[String]) -> Vec<Event> {
    let mut seen = HashSet::new();
    lines
        .iter()
        .filter_map(|l| paceline_decode::decode(l.as_bytes(), None).ok())
        .filter(|e| seen.insert((e.body.stream(), e.id.clone())))
        .collect()
}

/// What a run admits, by the rules of docs/events.md, in arrival order: a repeated id
/// of its stream is a duplicate whatever its content; an event older than its stream's
/// watermark (the latest time admitted so far minus the out-of-orderness) minus the
/// stream's correction horizon is `too_late` (and its id not remembered). Returns the
/// admitted events, the duplicates and the `too_late` count.
fn admitted(config: &Config, lines: &[String]) -> (Vec<Event>, u64, u64) {
    let mut seen = HashSet::new();
    let mut latest: [Option<Nanos>; 3] = [None; 3];
    let (mut out, mut duplicates, mut too_late) = (Vec::new(), 0, 0);
    for e in lines
        .iter()
        .filter_map(|l| paceline_decode::decode(l.as_bytes(), None).ok())
    {
        let stream = e.body.stream();
        if seen.contains(&(stream, e.id.clone())) {
            duplicates += 1;
            continue;
        }
        let rules = config.streams.get(stream);
        let floor = latest[stream.index()].map(|l| l - rules.out_of_orderness() - rules.horizon());
        if floor.is_some_and(|f| e.at < f) {
            too_late += 1;
            continue;
        }
        seen.insert((stream, e.id.clone()));
        let l = &mut latest[stream.index()];
        *l = Some(l.map_or(e.at, |l| l.max(e.at)));
        out.push(e);
    }
    (out, duplicates, too_late)
}

fn compare(
    config: &Config,
    events: &[Event],
    a: &lp::Points,
    b: &lp::Points,
) -> Vec<equiv::Difference> {
    let global_max = events.iter().map(|e| e.at).max().expect("some events");
    let stream_min = |s: Stream| {
        events
            .iter()
            .filter(|e| e.body.stream() == s)
            .map(|e| e.at)
            .min()
    };
    equiv::differences(
        a,
        b,
        |k: &SeriesKey| config.cadence(k.indicator),
        |k: &SeriesKey| {
            let c = config.cadence(k.indicator);
            stream_min(k.indicator.stream()).map(|m| (tick_after(m, c), tick_after(global_max, c)))
        },
        5,
    )
}

/// The differences between two outputs' plan verdicts: the same series judged at the same
/// ticks, values within a relative 1e-9, the same verdict unless the value lies within that
/// tolerance of the target.
fn verdict_differences(a: &lp::Verdicts, b: &lp::Verdicts) -> Vec<String> {
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0);
    let mut out = Vec::new();
    for key in a.keys().chain(b.keys()) {
        let (x, y) = (a.get(key), b.get(key));
        let same = match (x, y) {
            (Some((tx, vx, gx, dx)), Some((ty, vy, gy, dy))) => {
                let values = match (vx, vy) {
                    (Some(p), Some(q)) => close(*p, *q),
                    (None, None) => true,
                    _ => false,
                };
                let borderline = vx.is_some_and(|v| close(v, *gx));
                tx == ty && values && close(*gx, *gy) && (dx == dy || borderline)
            }
            _ => false,
        };
        if !same {
            out.push(format!("verdict of {}: {x:?} vs {y:?}", key.display()));
        }
    }
    out
}

fn check_seed(seed: u64, long: bool) -> (u64, usize, u64) {
    let config = config(long);
    let ordered: Vec<String> = events(seed, long).into_iter().map(|(_, l)| l).collect();
    let evs = accepted(&ordered);
    let oracle = model::run(&config, &evs);
    let judged = model::verdicts(&config, &evs);
    assert!(
        oracle.values().any(|m| m.values().any(|f| f.value != 0.0)),
        "seed {seed}: oracle is all zero"
    );
    let (ours, ours_verdicts, summary) = run(&config, &ordered, 1, &format!("{seed}-{long}-o"));
    assert_eq!(
        summary.rejected_total(),
        0,
        "seed {seed}: {}",
        summary.render(false)
    );
    assert!(summary.points > 0);
    let diff = compare(&config, &evs, &oracle, &ours);
    assert!(
        diff.is_empty(),
        "seed {seed} long={long} in order: oracle vs replay:\n{}",
        equiv::explain(&diff, &oracle, &ours)
    );
    let diff = verdict_differences(&judged, &ours_verdicts);
    assert!(
        diff.is_empty(),
        "seed {seed} long={long} in order: verdicts, oracle vs replay:\n{}",
        diff.join("\n")
    );

    // Shuffled beyond the out-of-orderness but within the horizons, with exact duplicates.
    let mut rng = Rng::new(seed ^ 0xABCD);
    let mut shuffled: Vec<(Nanos, u64, String)> = events(seed, long)
        .into_iter()
        .map(|(at, l)| {
            let max_delay = if l.contains("platform.") {
                20 * HOUR
            } else if long {
                60 * DAY
            } else {
                3 * DAY
            };
            (at + rng.below(max_delay as u64) as i64, rng.next_u64(), l)
        })
        .collect();
    let dups: Vec<_> = shuffled
        .iter()
        .filter(|_| rng.chance(0.15))
        .cloned()
        .collect();
    for (at, _, l) in dups {
        shuffled.push((at + HOUR, rng.next_u64(), l));
    }
    shuffled.sort_by_key(|(a, r, _)| (*a, *r));
    let shuffled: Vec<String> = shuffled.into_iter().map(|(_, _, l)| l).collect();
    let (ours1, verdicts1, s1) = run(&config, &shuffled, 1, &format!("{seed}-{long}-s1"));
    assert_eq!(s1.rejected_total(), 0, "seed {seed}: {}", s1.render(false));
    assert!(s1.duplicates.iter().sum::<u64>() > 0 || shuffled.len() == ordered.len());
    let diff = compare(&config, &evs, &oracle, &ours1);
    assert!(
        diff.is_empty(),
        "seed {seed} long={long} shuffled: oracle vs replay:\n{}",
        equiv::explain(&diff, &oracle, &ours1)
    );
    let diff = verdict_differences(&judged, &verdicts1);
    assert!(
        diff.is_empty(),
        "seed {seed} long={long} shuffled: verdicts, oracle vs replay:\n{}",
        diff.join("\n")
    );
    let (ours4, verdicts4, _) = run(&config, &shuffled, 4, &format!("{seed}-{long}-s4"));
    let diff = verdict_differences(&judged, &verdicts4);
    assert!(
        diff.is_empty(),
        "seed {seed} long={long} shuffled, 4 workers: verdicts, oracle vs replay:\n{}",
        diff.join("\n")
    );
    let diff = compare(&config, &evs, &ours1, &ours4);
    assert!(
        diff.is_empty(),
        "seed {seed} long={long}: 1 worker vs 4 workers:\n{}",
        equiv::explain(&diff, &ours1, &ours4)
    );
    let too_late = disorder_with_rejections(seed, long, &config);
    (s1.corrections.iter().sum(), judged.len(), too_late)
}

/// Disorder the admission rules act on: some events held back beyond their stream's
/// horizon (`too_late`), and repeats of ids with other content (duplicates: the first
/// arrival stands). The model is fed what the contract's rules admit ([`admitted`]),
/// decided here, not by the pipeline; replay's output and its counts must agree.
fn disorder_with_rejections(seed: u64, long: bool, config: &Config) -> u64 {
    let mut rng = Rng::new(seed ^ 0x7A7E);
    let mut arriving: Vec<(Nanos, u64, String)> = events(seed, long)
        .into_iter()
        .map(|(at, l)| {
            let stream_horizon = if l.contains("platform.") {
                2 * DAY
            } else {
                400 * DAY
            };
            // One in eight held back past its horizon (most become too late, unless
            // nothing later of its stream came first).
            let delay = if rng.chance(0.125) {
                stream_horizon + DAY + rng.below(DAY as u64) as i64
            } else {
                rng.below(HOUR as u64) as i64
            };
            (at + delay, rng.next_u64(), l)
        })
        .collect();
    // Repeats of ids with other content: the same time, another number.
    let mut repeats = Vec::new();
    for (at, _, l) in &arriving {
        if rng.chance(0.1) {
            repeats.push((*at + HOUR, rng.next_u64(), other_content(l)));
        }
    }
    arriving.extend(repeats);
    arriving.sort_by_key(|(a, r, _)| (*a, *r));
    let lines: Vec<String> = arriving.into_iter().map(|(_, _, l)| l).collect();
    let (evs, duplicates, too_late) = admitted(config, &lines);
    let oracle = model::run(config, &evs);
    let judged = model::verdicts(config, &evs);
    let (ours, verdicts, summary) = run(config, &lines, 2, &format!("{seed}-{long}-r"));
    let rejected: u64 = summary.rejected.values().sum();
    let late = summary
        .rejected
        .iter()
        .filter(|((_, reason), _)| *reason == "too_late")
        .map(|(_, n)| n)
        .sum::<u64>();
    assert_eq!(
        (late, rejected),
        (too_late, too_late),
        "seed {seed} long={long}: too_late by the contract's rule, nothing else rejected"
    );
    assert_eq!(
        summary.duplicates.iter().sum::<u64>(),
        duplicates,
        "seed {seed} long={long}: duplicates"
    );
    let diff = compare(config, &evs, &oracle, &ours);
    assert!(
        diff.is_empty(),
        "seed {seed} long={long} with rejections: oracle vs replay:\n{}",
        equiv::explain(&diff, &oracle, &ours)
    );
    let diff = verdict_differences(&judged, &verdicts);
    assert!(
        diff.is_empty(),
        "seed {seed} long={long} with rejections: verdicts, oracle vs replay:\n{}",
        diff.join("\n")
    );
    too_late
}

/// `line` with its first number after `"type"` changed (same id, same time, other content).
fn other_content(line: &str) -> String {
    let at = line.find("\"type\"").unwrap_or(0);
    let rest = &line[at..];
    match rest.find(|c: char| c.is_ascii_digit()) {
        Some(i) => {
            let i = at + i;
            let digit = line.as_bytes()[i] - b'0';
            let changed = ((digit + 1) % 10 + b'0') as char;
            format!("{}{}{}", &line[..i], changed, &line[i + 1..])
        }
        None => line.replace("\"name\":\"n\"", "\"name\":\"m\""),
    }
}

#[test]
fn long_span_daily_cadence_matches_the_model() {
    let (mut corrections, mut judged, mut too_late) = (0, 0, 0);
    for seed in 0..12 {
        let (c, j, l) = check_seed(seed, true);
        corrections += c;
        judged += j;
        too_late += l;
    }
    assert!(corrections > 0, "shuffling must cause corrections");
    assert!(judged > 12, "goals must be judged: {judged} verdicts");
    assert!(too_late > 0, "holding events back must make some too late");
}

#[test]
fn short_span_default_cadences_match_the_model() {
    let (mut corrections, mut too_late) = (0, 0);
    for seed in 100..112 {
        let (c, _, l) = check_seed(seed, false);
        corrections += c;
        too_late += l;
    }
    assert!(corrections > 0, "shuffling must cause corrections");
    assert!(too_late > 0, "holding events back must make some too late");
}
