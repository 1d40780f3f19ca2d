//! A deterministic simulated district, 2021-10 to 2025-12, as JSON Lines events.
//!
//! Sits beside the pipeline (an ingest stand-in for demo, tests and benchmarks): enterprises
//! with heavy-tailed valuations and growing revenue, amended filings, re-registrations,
//! revocations and deregistrations, SMEs moving to the cloud; scenarios moving through
//! stages with usage while live; projects of the three kinds across the four regions;
//! platforms with heartbeats and usage. Mostly time-ordered with bounded disorder, a share
//! of exact duplicates and a few bad lines. The same seed and scale give the same bytes.

use std::io::Write;
use std::path::Path;

use paceline_model::event::{Cluster, Field, PlatformKind, Region};
use paceline_model::time::{civil_from_days, days_from_civil, quarter_end, DAY, HOUR, SECOND};
use paceline_model::Nanos;

/// SplitMix64: small, fast and the same everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
    /// True with probability p.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// Pick one.
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

/// Formats an instant as RFC 3339 with the given offset in minutes and milliseconds.
pub fn rfc3339(t: Nanos, offset_min: i64) -> String {
    let local = t + offset_min * 60 * SECOND;
    let days = local.div_euclid(DAY);
    let rem = local.rem_euclid(DAY);
    let (y, m, d) = civil_from_days(days);
    let secs = rem / SECOND;
    let ms = (rem % SECOND) / 1_000_000;
    let off = if offset_min == 0 {
        "Z".to_string()
    } else {
        let sign = if offset_min < 0 { '-' } else { '+' };
        format!(
            "{sign}{:02}:{:02}",
            offset_min.abs() / 60,
            offset_min.abs() % 60
        )
    };
    let frac = if ms == 0 {
        String::new()
    } else {
        format!(".{ms:03}")
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{frac}{off}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// An event id, formatted only when its line is: the counter is shared by every line, so
/// it is drawn in generation order whether or not the line is kept.
#[derive(Clone, Copy)]
struct Id(&'static str, u64);

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{:08}", self.0, self.1)
    }
}

/// An `occurred_at`: the instant and the offset drawn for it, formatted only when its line is.
#[derive(Clone, Copy)]
struct Stamp(Nanos, i64);

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&rfc3339(self.0, self.1))
    }
}

fn ts(rng: &mut Rng, t: Nanos) -> Stamp {
    let offset = match rng.below(20) {
        0 => 0,
        1 => -300,
        _ => 480,
    };
    Stamp(t, offset)
}

/// Where the district's lines go, in the order they are generated (their `seq`, from 0).
/// Every random draw happens whatever the sink keeps; `line` is called only for the lines
/// it keeps, so that a pass keeping a few lines costs the draws and little else.
trait Lines {
    fn push(&mut self, arrival: Nanos, line: impl FnOnce() -> String);
    /// An exact duplicate of line `of` (already generated), arriving `delay` after it.
    fn repeat(&mut self, of: usize, delay: Nanos);
    /// Lines generated so far.
    fn len(&self) -> usize;
}

/// Generates the whole district into `out`, in generation order (entity by entity); the
/// caller puts it in arrival order.
fn district(seed: u64, scale: f64, out: &mut impl Lines) {
    let mut rng = Rng::new(seed);
    let begin = days_from_civil(2021, 10, 1) * DAY - 8 * HOUR;
    let end = days_from_civil(2025, 12, 31) * DAY - 8 * HOUR;
    let span = end - begin;
    let n = |base: f64| ((base * scale).round() as u64).max(1);
    let mut ids = 0u64;
    let mut next_id = |prefix: &'static str| {
        ids += 1;
        Id(prefix, ids)
    };
    // Normal disorder: up to 3 minutes; filings sometimes weeks late (within the horizon).
    let arrival = |rng: &mut Rng, t: Nanos, late_share: f64| -> Nanos {
        let jitter = rng.below(180) as i64 * SECOND;
        if rng.chance(late_share) {
            t + jitter + rng.below(40) as i64 * DAY
        } else {
            t + jitter
        }
    };

    // Enterprises.
    let clusters = Cluster::ALL;
    let regions = Region::ALL;
    for e in 0..n(3000.0) {
        let eid = format!("E{e:06}");
        let eid = eid.as_str();
        let reg_at = begin + (rng.unit().powf(1.3) * span as f64 * 0.85) as i64;
        let cluster = if rng.chance(0.3) {
            Cluster::NonDigital
        } else {
            *rng.pick(&clusters[..7])
        };
        let cluster = if e % 41 == 0 {
            Cluster::Cybersecurity
        } else if e % 43 == 0 {
            Cluster::UrbanTechnology
        } else {
            cluster
        };
        let region = *rng.pick(regions);
        let sme = rng.chance(0.7);
        let reg = |id: Id, at: Stamp, c: Cluster, s: bool| {
            move || {
                format!(
                    r#"{{"event_id":"{id}","type":"enterprise.registered","occurred_at":"{at}","source":"registry","enterprise_id":"{eid}","name":"Enterprise {e}","cluster":"{}","region":"{}","sme":{s}}}"#,
                    c.as_str(),
                    region.as_str()
                )
            }
        };
        let (id, at) = (next_id("f"), ts(&mut rng, reg_at));
        let a = arrival(&mut rng, reg_at, 0.01);
        out.push(a, reg(id, at, cluster, sme));
        // Life: maybe deregistered, maybe re-registered with a new cluster.
        let life_end = if rng.chance(0.08) {
            reg_at + (rng.unit() * (end - reg_at) as f64) as i64
        } else {
            end
        };
        if life_end < end {
            let (id, at) = (next_id("f"), ts(&mut rng, life_end));
            out.push(arrival(&mut rng, life_end, 0.01), || {
                format!(
                    r#"{{"event_id":"{id}","type":"enterprise.deregistered","occurred_at":"{at}","enterprise_id":"{eid}"}}"#
                )
            });
        }
        if rng.chance(0.05) {
            let t = reg_at + (rng.unit() * (life_end - reg_at) as f64) as i64;
            let c = *rng.pick(&clusters[..7]);
            let s2 = rng.chance(0.5);
            let (id, at) = (next_id("f"), ts(&mut rng, t));
            out.push(arrival(&mut rng, t, 0.01), reg(id, at, c, s2));
        }
        // Valuations: heavy tail (Pareto), growing.
        let mut valuation = 4e6 / rng.unit().max(1e-4).powf(0.9);
        let mut t = reg_at + rng.below(200) as i64 * DAY;
        while t < life_end && rng.chance(0.8) {
            let (id, at, v) = (next_id("f"), ts(&mut rng, t), valuation);
            out.push(arrival(&mut rng, t, 0.01), || {
                format!(
                    r#"{{"event_id":"{id}","type":"enterprise.valuation","occurred_at":"{at}","enterprise_id":"{eid}","valuation_cny":{v:.0}}}"#
                )
            });
            valuation *= 1.0 + rng.unit() * 0.9;
            t += (120 + rng.below(240) as i64) * DAY;
        }
        // SRDI certification, sometimes revoked.
        if rng.chance(0.06) {
            let g = reg_at + rng.below(700) as i64 * DAY;
            if g < life_end {
                let cert = |id: Id, at: Stamp, action: &'static str| {
                    move || {
                        format!(
                            r#"{{"event_id":"{id}","type":"enterprise.certification","occurred_at":"{at}","enterprise_id":"{eid}","certification":"srdi","action":"{action}"}}"#
                        )
                    }
                };
                let (id, at) = (next_id("f"), ts(&mut rng, g));
                out.push(arrival(&mut rng, g, 0.01), cert(id, at, "granted"));
                if rng.chance(0.1) {
                    let r = g + rng.below(400) as i64 * DAY;
                    let (id, at) = (next_id("f"), ts(&mut rng, r));
                    out.push(arrival(&mut rng, r, 0.01), cert(id, at, "revoked"));
                }
            }
        }
        if sme && rng.chance(0.35) {
            let t = reg_at + rng.below(900) as i64 * DAY;
            if t < life_end {
                let (id, at) = (next_id("f"), ts(&mut rng, t));
                let level = if rng.chance(0.3) { "deep" } else { "basic" };
                out.push(arrival(&mut rng, t, 0.01), || {
                    format!(
                        r#"{{"event_id":"{id}","type":"enterprise.cloud_migration","occurred_at":"{at}","enterprise_id":"{eid}","level":"{level}"}}"#
                    )
                });
            }
        }
        // Quarterly financials, filed 20-40 days after the quarter; some amended.
        let mut revenue = 1.5e6 / rng.unit().max(1e-3).powf(0.5);
        let first_q = {
            let (y, m, _) = civil_from_days((reg_at + 8 * HOUR).div_euclid(DAY));
            y as i32 * 4 + (m as i32 - 1) / 3
        };
        let mut q = first_q.max(2021 * 4);
        while quarter_end(q) + 20 * DAY < life_end.min(end) {
            let filed = quarter_end(q)
                + (20 + rng.below(20) as i64) * DAY
                + rng.below(86_400) as i64 * SECOND;
            let added = revenue * (0.2 + rng.unit() * 0.2)
                - if rng.chance(0.05) { revenue * 0.5 } else { 0.0 };
            let fin = |id: Id, at: Stamp, rev: f64, av: f64, revision: u32| {
                move || {
                    format!(
                        r#"{{"event_id":"{id}","type":"enterprise.financials","occurred_at":"{at}","enterprise_id":"{eid}","period":"{}-Q{}","revenue_cny":{rev:.2},"added_value_cny":{av:.2},"revision":{revision}}}"#,
                        q.div_euclid(4),
                        q.rem_euclid(4) + 1,
                    )
                }
            };
            let (id, at) = (next_id("f"), ts(&mut rng, filed));
            out.push(
                arrival(&mut rng, filed, 0.01),
                fin(id, at, revenue, added, 0),
            );
            if rng.chance(0.1) {
                let t2 = filed + (10 + rng.below(40) as i64) * DAY;
                let amended = revenue * (0.9 + rng.unit() * 0.2);
                let (id, at) = (next_id("f"), ts(&mut rng, t2));
                out.push(
                    arrival(&mut rng, t2, 0.01),
                    fin(id, at, amended, added * 1.05, 1),
                );
            }
            revenue *= 1.0 + (rng.unit() - 0.35) * 0.12;
            q += 1;
        }
    }

    // Platforms: heartbeats every 30 minutes and usage every hour.
    let kinds = PlatformKind::ALL;
    for p in 0..n(9.0) {
        let pid = format!("platform-{p:03}");
        let pid = pid.as_str();
        let kind = kinds[p as usize % kinds.len()].as_str();
        let start = begin + rng.below(120) as i64 * DAY;
        let mut connected = 20 + rng.below(100);
        let reliability = 0.97 + rng.unit() * 0.029;
        let mut t = start;
        let mut k = 0u64;
        while t < end {
            let status = if rng.chance(reliability) {
                "up"
            } else if rng.chance(0.5) {
                "degraded"
            } else {
                "down"
            };
            let (id, at) = (next_id("t"), ts(&mut rng, t));
            out.push(arrival(&mut rng, t, 0.0), || {
                format!(
                    r#"{{"event_id":"{id}","type":"platform.heartbeat","occurred_at":"{at}","platform_id":"{pid}","platform_kind":"{kind}","status":"{status}","interval_s":1800}}"#
                )
            });
            if k.is_multiple_of(2) {
                if rng.chance(0.01) {
                    connected += rng.below(4);
                }
                let (id, at) = (next_id("t"), ts(&mut rng, t + 60 * SECOND));
                let (calls, records, connected) = (rng.below(5000), rng.below(50_000), connected);
                out.push(arrival(&mut rng, t + 60 * SECOND, 0.0), || {
                    format!(
                        r#"{{"event_id":"{id}","type":"platform.usage","occurred_at":"{at}","platform_id":"{pid}","platform_kind":"{kind}","api_calls":{calls},"records_shared":{records},"connected_enterprises":{connected}}}"#
                    )
                });
            }
            t += 30 * 60 * SECOND;
            k += 1;
        }
    }

    // Scenarios: planned → piloting → live (→ retired), daily usage while live.
    let fields = Field::ALL;
    for s in 0..n(45.0) {
        let sid = format!("S-{s:04}");
        let sid = sid.as_str();
        let field = fields[s as usize % fields.len()].as_str();
        let region = rng.pick(regions).as_str();
        let planned = begin + (rng.unit() * span as f64 * 0.7) as i64;
        let piloting = planned + (30 + rng.below(150) as i64) * DAY;
        let live = piloting + (30 + rng.below(200) as i64) * DAY;
        let retired = if rng.chance(0.15) {
            live + (60 + rng.below(400) as i64) * DAY
        } else {
            end + DAY
        };
        for (t, stage) in [
            (planned, "planned"),
            (piloting, "piloting"),
            (live, "live"),
            (retired, "retired"),
        ] {
            if t >= end {
                continue;
            }
            let (id, at) = (next_id("s"), ts(&mut rng, t));
            out.push(arrival(&mut rng, t, 0.02), || {
                format!(
                    r#"{{"event_id":"{id}","type":"scenario.stage","occurred_at":"{at}","scenario_id":"{sid}","name":"Scenario {s}","field":"{field}","region":"{region}","stage":"{stage}"}}"#
                )
            });
        }
        let mut t = live + rng.below(86_400) as i64 * SECOND;
        let mut users = 50 + rng.below(500);
        while t < retired.min(end) {
            if !rng.chance(0.08) {
                let (id, at) = (next_id("s"), ts(&mut rng, t));
                let (transactions, value) = (rng.below(users * 3), rng.unit() * 50_000.0);
                out.push(arrival(&mut rng, t, 0.005), || {
                    format!(
                        r#"{{"event_id":"{id}","type":"scenario.usage","occurred_at":"{at}","scenario_id":"{sid}","active_users":{users},"transactions":{transactions},"value_cny":{value:.2}}}"#
                    )
                });
            }
            users = (users as f64 * (1.0 + (rng.unit() - 0.45) * 0.05)) as u64 + 1;
            t += DAY;
        }
    }

    // Projects of the three kinds across the regions.
    let kinds = [
        ("data_zone", 2.2),
        ("benchmark_project", 1.6),
        ("demonstration_project", 34.0),
    ];
    for (kind, count) in kinds {
        for p in 0..n(count) {
            let pid = format!("P-{kind}-{p:03}");
            let pid = pid.as_str();
            let region = regions[p as usize % 4].as_str();
            let planned = begin + (rng.unit() * span as f64 * 0.5) as i64;
            let underway = planned + (20 + rng.below(200) as i64) * DAY;
            let delivered = underway + (100 + rng.below(700) as i64) * DAY;
            let cancelled = rng.chance(0.08);
            let stages = [
                (planned, "planned"),
                (underway, "underway"),
                (delivered, if cancelled { "cancelled" } else { "delivered" }),
            ];
            for (t, stage) in stages {
                if t >= end {
                    continue;
                }
                let (id, at) = (next_id("s"), ts(&mut rng, t));
                out.push(arrival(&mut rng, t, 0.02), || {
                    format!(
                        r#"{{"event_id":"{id}","type":"project.stage","occurred_at":"{at}","project_id":"{pid}","name":"Project {p}","project_kind":"{kind}","region":"{region}","stage":"{stage}"}}"#
                    )
                });
            }
        }
    }

    // Exact duplicates shortly after the original, and a few bad lines.
    let count = out.len();
    for _ in 0..(count / 200) {
        let i = rng.below(count as u64) as usize;
        out.repeat(i, rng.below(600) as i64 * SECOND);
    }
    let bad = [
        r#"{"event_id":"bad-1","type":"enterprise.promoted","occurred_at":"2023-06-30T16:00:00Z","enterprise_id":"E1"}"#,
        r#"{"event_id":"bad-2","type":"enterprise.valuation","occurred_at":"2023-06-30 16:00:00","enterprise_id":"E1","valuation_cny":5}"#,
        r#"{"event_id":"bad-3","type":"scenario.usage","occurred_at":"2023-06-30T16:00:00Z","scenario_id":"S-0001","active_users":5.0,"transactions":1,"value_cny":1}"#,
        r#"{"event_id":"bad-4","type":"platform.heartbeat","occurred_at":"2023-06-30T16:00:00Z","platform_id":"p","platform_kind":"satellite","status":"up","interval_s":60}"#,
        r#"{"event_id":"bad-5","type":"enterprise.valuation","occurred_at":"2023-06-30T16:00:00Z","enterprise_id":"E1","valuation_cny":-3}"#,
        r#"{"event_id":"bad-6","event_id":"bad-6","type":"enterprise.deregistered","occurred_at":"2023-06-30T16:00:00Z","enterprise_id":"E1"}"#,
        r#"not json at all"#,
        r#"{"event_id":"bad-7","type":"enterprise.financials","occurred_at":"2023-06-30T16:00:00Z","enterprise_id":"E1","period":"2023-Q1","revenue_cny":1,"added_value_cny":1}"#,
    ];
    for _ in 0..(count / 5000).max(8) {
        let t = begin + (rng.unit() * span as f64) as i64;
        let which = *rng.pick(&bad);
        let tag = rng.below(1 << 40);
        out.push(t, || which.replace("bad-", &format!("bad{tag}-")));
    }
}

/// The first pass: when each line arrives, and which lines are duplicates of which.
#[derive(Default)]
struct Arrivals {
    arrivals: Vec<Nanos>,
    /// (the duplicate's seq, the seq of the line it repeats).
    repeats: Vec<(usize, usize)>,
}

impl Lines for Arrivals {
    fn push(&mut self, arrival: Nanos, _: impl FnOnce() -> String) {
        self.arrivals.push(arrival);
    }
    fn repeat(&mut self, of: usize, delay: Nanos) {
        self.repeats.push((self.arrivals.len(), of));
        self.arrivals.push(self.arrivals[of] + delay);
    }
    fn len(&self) -> usize {
        self.arrivals.len()
    }
}

/// A later pass: formats the lines whose place in arrival order falls in `lo..hi` (and the
/// originals of the duplicates there), each into its slot.
struct Window<'a> {
    plan: &'a Plan,
    lo: usize,
    seq: usize,
    slots: Vec<String>,
    /// Originals some duplicate in the window repeats: seq → its text once generated.
    originals: std::collections::HashMap<usize, Option<String>>,
}

impl Window<'_> {
    fn slot(&self, seq: usize) -> Option<usize> {
        (self.plan.rank[seq] as usize)
            .checked_sub(self.lo)
            .filter(|i| *i < self.slots.len())
    }
}

impl Lines for Window<'_> {
    fn push(&mut self, _: Nanos, line: impl FnOnce() -> String) {
        let seq = self.seq;
        self.seq += 1;
        let slot = self.slot(seq);
        let original = self.originals.get_mut(&seq);
        if slot.is_none() && original.is_none() {
            return;
        }
        let text = line();
        if let Some(o) = original {
            *o = Some(text.clone());
        }
        if let Some(i) = slot {
            self.slots[i] = text;
        }
    }
    fn repeat(&mut self, of: usize, _: Nanos) {
        let seq = self.seq;
        self.seq += 1;
        if let Some(i) = self.slot(seq) {
            // Originals come before every duplicate: its text is here by now.
            if let Some(Some(text)) = self.originals.get(&of) {
                self.slots[i] = text.clone();
            }
        }
    }
    fn len(&self) -> usize {
        self.seq
    }
}

/// What the first pass learnt: every line's place in arrival order.
struct Plan {
    /// seq → place in arrival order (ties in generation order).
    rank: Vec<u32>,
    repeats: Vec<(usize, usize)>,
}

impl Plan {
    fn of(seed: u64, scale: f64) -> Plan {
        let mut first = Arrivals::default();
        district(seed, scale, &mut first);
        let Arrivals { arrivals, repeats } = first;
        let mut order: Vec<u32> = (0..arrivals.len() as u32).collect();
        // Stable: lines arriving at the same instant stay in generation order.
        order.sort_by_key(|&s| arrivals[s as usize]);
        let mut rank = vec![0u32; arrivals.len()];
        for (place, seq) in order.into_iter().enumerate() {
            rank[seq as usize] = place as u32;
        }
        Plan { rank, repeats }
    }
}

/// The district as a stream of lines in arrival order, produced chunk by chunk: a first
/// pass learns each line's place in arrival order (4 bytes a line), then each chunk of
/// `chunk` lines in arrival order is generated again and only its own lines formatted.
/// Memory is the plan and one chunk of text, not the whole district; the bytes are the same
/// whatever the chunk.
pub struct District {
    seed: u64,
    scale: f64,
    plan: Plan,
    chunk: usize,
    next: usize,
    lines: std::vec::IntoIter<String>,
}

impl District {
    /// Lines per chunk in [`District::new`]: about 15 MB of text at a time.
    pub const CHUNK: usize = 1 << 16;

    /// The district of `seed` and `scale`, in chunks of [`District::CHUNK`] lines.
    pub fn new(seed: u64, scale: f64) -> District {
        District::with_chunk(seed, scale, District::CHUNK)
    }

    /// The same lines in chunks of `chunk` (at least 1).
    pub fn with_chunk(seed: u64, scale: f64, chunk: usize) -> District {
        District {
            seed,
            scale,
            plan: Plan::of(seed, scale),
            chunk: chunk.max(1),
            next: 0,
            lines: Vec::new().into_iter(),
        }
    }

    /// How many lines there are in all.
    pub fn total(&self) -> usize {
        self.plan.rank.len()
    }

    fn next_chunk(&mut self) -> Vec<String> {
        let lo = self.next;
        let hi = lo.saturating_add(self.chunk).min(self.total());
        self.next = hi;
        let originals = self
            .plan
            .repeats
            .iter()
            .filter(|(dup, _)| (lo..hi).contains(&(self.plan.rank[*dup] as usize)))
            .map(|(_, of)| (*of, None))
            .collect();
        let mut window = Window {
            plan: &self.plan,
            lo,
            seq: 0,
            slots: vec![String::new(); hi - lo],
            originals,
        };
        district(self.seed, self.scale, &mut window);
        window.slots
    }
}

impl Iterator for District {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        loop {
            if let Some(line) = self.lines.next() {
                return Some(line);
            }
            if self.next >= self.total() {
                return None;
            }
            self.lines = self.next_chunk().into_iter();
        }
    }
}

/// Generates the district: returns the lines in arrival order.
pub fn generate(seed: u64, scale: f64) -> Vec<String> {
    District::with_chunk(seed, scale, usize::MAX).collect()
}

/// Writes the district to a file, chunk by chunk; returns the number of lines.
pub fn generate_to_file(seed: u64, scale: f64, path: &Path) -> std::io::Result<u64> {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut n = 0u64;
    for l in District::new(seed, scale) {
        f.write_all(l.as_bytes())?;
        f.write_all(b"\n")?;
        n += 1;
    }
    f.flush()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_scaled() {
        let a = generate(7, 0.02);
        let b = generate(7, 0.02);
        assert_eq!(a, b);
        assert_ne!(a, generate(8, 0.02));
        assert!(a.len() > 5_000, "{}", a.len());
        assert_eq!(rfc3339(0, 480), "1970-01-01T08:00:00+08:00");
        assert_eq!(rfc3339(1_500_000_000, 0), "1970-01-01T00:00:01.500Z");
    }
}

#[cfg(test)]
mod pinned {
    use super::*;

    /// FNV-1a over the lines as a file holds them.
    fn fnv(lines: impl Iterator<Item = String>) -> (usize, u64) {
        let mut h: u64 = 0xcbf29ce484222325;
        let mut n = 0;
        for l in lines {
            n += 1;
            for b in l.bytes().chain(std::iter::once(b'\n')) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x100000001b3);
            }
        }
        (n, h)
    }

    /// The bytes the generator gave before it streamed (all lines built in memory, then
    /// sorted by arrival), recorded from that version: the streaming generator must give
    /// the same district, whatever its chunk.
    #[test]
    fn the_same_bytes_as_before_streaming_in_any_chunk() {
        let recorded = [
            (7, 0.02, 112_506, 0xa0f8_9e43_015d_d76d_u64),
            (5, 0.05, 109_593, 0x5ff8_b099_b0ee_d27d),
            (1, 0.1, 120_027, 0x6adf_293a_f9a7_16d5),
        ];
        for (seed, scale, lines, hash) in recorded {
            for chunk in [usize::MAX, District::CHUNK, 10_007] {
                assert_eq!(
                    fnv(District::with_chunk(seed, scale, chunk)),
                    (lines, hash),
                    "seed {seed}, scale {scale}, chunk {chunk}"
                );
            }
        }
    }

    /// A duplicate whose original falls in another chunk is still the original's text.
    #[test]
    fn duplicates_across_chunks_repeat_their_original() {
        let whole = generate(7, 0.02);
        let small: Vec<String> = District::with_chunk(7, 0.02, 97).collect();
        assert_eq!(whole.len(), small.len());
        let first_diff = whole.iter().zip(&small).position(|(a, b)| a != b);
        assert_eq!(first_diff, None);
        let mut seen = std::collections::HashSet::new();
        let repeated = whole.iter().filter(|l| !seen.insert(*l)).count();
        assert!(repeated >= whole.len() / 250, "{repeated} duplicates");
    }

    /// The benchmarks' district (`generate --seed 5 --scale 1`), in the default chunks.
    #[test]
    #[ignore = "a million lines: run with --ignored in release"]
    fn the_benchmarks_district_is_unchanged() {
        assert_eq!(
            fnv(District::new(5, 1.0)),
            (1_039_307, 0xdff1_7e33_6203_9941)
        );
    }
}
