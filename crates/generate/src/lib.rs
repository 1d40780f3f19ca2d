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

struct Out {
    lines: Vec<(Nanos, u64, String)>,
    seq: u64,
}

impl Out {
    fn push(&mut self, arrival: Nanos, line: String) {
        self.seq += 1;
        self.lines.push((arrival, self.seq, line));
    }
}

fn ts(rng: &mut Rng, t: Nanos) -> String {
    let offset = match rng.below(20) {
        0 => 0,
        1 => -300,
        _ => 480,
    };
    rfc3339(t, offset)
}

/// Generates the district: returns the lines in arrival order.
pub fn generate(seed: u64, scale: f64) -> Vec<String> {
    let mut rng = Rng::new(seed);
    let begin = days_from_civil(2021, 10, 1) * DAY - 8 * HOUR;
    let end = days_from_civil(2025, 12, 31) * DAY - 8 * HOUR;
    let span = end - begin;
    let mut out = Out {
        lines: Vec::new(),
        seq: 0,
    };
    let n = |base: f64| ((base * scale).round() as u64).max(1);
    let mut ids = 0u64;
    let mut next_id = |prefix: &str| {
        ids += 1;
        format!("{prefix}-{ids:08}")
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
        let reg = |rng: &mut Rng, id: String, t: Nanos, c: Cluster, s: bool| {
            format!(
                r#"{{"event_id":"{id}","type":"enterprise.registered","occurred_at":"{}","source":"registry","enterprise_id":"{eid}","name":"Enterprise {e}","cluster":"{}","region":"{}","sme":{s}}}"#,
                ts(rng, t),
                c.as_str(),
                region.as_str()
            )
        };
        let line = reg(&mut rng, next_id("f"), reg_at, cluster, sme);
        let a = arrival(&mut rng, reg_at, 0.01);
        out.push(a, line);
        // Life: maybe deregistered, maybe re-registered with a new cluster.
        let life_end = if rng.chance(0.08) {
            reg_at + (rng.unit() * (end - reg_at) as f64) as i64
        } else {
            end
        };
        if life_end < end {
            let line = format!(
                r#"{{"event_id":"{}","type":"enterprise.deregistered","occurred_at":"{}","enterprise_id":"{eid}"}}"#,
                next_id("f"),
                ts(&mut rng, life_end)
            );
            out.push(arrival(&mut rng, life_end, 0.01), line);
        }
        if rng.chance(0.05) {
            let t = reg_at + (rng.unit() * (life_end - reg_at) as f64) as i64;
            let c = *rng.pick(&clusters[..7]);
            let s2 = rng.chance(0.5);
            let line = reg(&mut rng, next_id("f"), t, c, s2);
            out.push(arrival(&mut rng, t, 0.01), line);
        }
        // Valuations: heavy tail (Pareto), growing.
        let mut valuation = 4e6 / rng.unit().max(1e-4).powf(0.9);
        let mut t = reg_at + rng.below(200) as i64 * DAY;
        while t < life_end && rng.chance(0.8) {
            let line = format!(
                r#"{{"event_id":"{}","type":"enterprise.valuation","occurred_at":"{}","enterprise_id":"{eid}","valuation_cny":{:.0}}}"#,
                next_id("f"),
                ts(&mut rng, t),
                valuation
            );
            out.push(arrival(&mut rng, t, 0.01), line);
            valuation *= 1.0 + rng.unit() * 0.9;
            t += (120 + rng.below(240) as i64) * DAY;
        }
        // SRDI certification, sometimes revoked.
        if rng.chance(0.06) {
            let g = reg_at + rng.below(700) as i64 * DAY;
            if g < life_end {
                let cert = |rng: &mut Rng, id: String, t: Nanos, action: &str| {
                    format!(
                        r#"{{"event_id":"{id}","type":"enterprise.certification","occurred_at":"{}","enterprise_id":"{eid}","certification":"srdi","action":"{action}"}}"#,
                        ts(rng, t)
                    )
                };
                let line = cert(&mut rng, next_id("f"), g, "granted");
                out.push(arrival(&mut rng, g, 0.01), line);
                if rng.chance(0.1) {
                    let r = g + rng.below(400) as i64 * DAY;
                    let line = cert(&mut rng, next_id("f"), r, "revoked");
                    out.push(arrival(&mut rng, r, 0.01), line);
                }
            }
        }
        if sme && rng.chance(0.35) {
            let t = reg_at + rng.below(900) as i64 * DAY;
            if t < life_end {
                let line = format!(
                    r#"{{"event_id":"{}","type":"enterprise.cloud_migration","occurred_at":"{}","enterprise_id":"{eid}","level":"{}"}}"#,
                    next_id("f"),
                    ts(&mut rng, t),
                    if rng.chance(0.3) { "deep" } else { "basic" }
                );
                out.push(arrival(&mut rng, t, 0.01), line);
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
            let fin = |rng: &mut Rng, id: String, t: Nanos, rev: f64, av: f64, revision: u32| {
                format!(
                    r#"{{"event_id":"{id}","type":"enterprise.financials","occurred_at":"{}","enterprise_id":"{eid}","period":"{}-Q{}","revenue_cny":{:.2},"added_value_cny":{:.2},"revision":{revision}}}"#,
                    ts(rng, t),
                    q.div_euclid(4),
                    q.rem_euclid(4) + 1,
                    rev,
                    av
                )
            };
            let line = fin(&mut rng, next_id("f"), filed, revenue, added, 0);
            out.push(arrival(&mut rng, filed, 0.01), line);
            if rng.chance(0.1) {
                let t2 = filed + (10 + rng.below(40) as i64) * DAY;
                let amended = revenue * (0.9 + rng.unit() * 0.2);
                let line = fin(&mut rng, next_id("f"), t2, amended, added * 1.05, 1);
                out.push(arrival(&mut rng, t2, 0.01), line);
            }
            revenue *= 1.0 + (rng.unit() - 0.35) * 0.12;
            q += 1;
        }
    }

    // Platforms: heartbeats every 30 minutes and usage every hour.
    let kinds = PlatformKind::ALL;
    for p in 0..n(9.0) {
        let pid = format!("platform-{p:03}");
        let kind = kinds[p as usize % kinds.len()];
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
            let line = format!(
                r#"{{"event_id":"{}","type":"platform.heartbeat","occurred_at":"{}","platform_id":"{pid}","platform_kind":"{}","status":"{status}","interval_s":1800}}"#,
                next_id("t"),
                ts(&mut rng, t),
                kind.as_str()
            );
            out.push(arrival(&mut rng, t, 0.0), line);
            if k % 2 == 0 {
                if rng.chance(0.01) {
                    connected += rng.below(4);
                }
                let line = format!(
                    r#"{{"event_id":"{}","type":"platform.usage","occurred_at":"{}","platform_id":"{pid}","platform_kind":"{}","api_calls":{},"records_shared":{},"connected_enterprises":{connected}}}"#,
                    next_id("t"),
                    ts(&mut rng, t + 60 * SECOND),
                    kind.as_str(),
                    rng.below(5000),
                    rng.below(50_000)
                );
                out.push(arrival(&mut rng, t + 60 * SECOND, 0.0), line);
            }
            t += 30 * 60 * SECOND;
            k += 1;
        }
    }

    // Scenarios: planned → piloting → live (→ retired), daily usage while live.
    let fields = Field::ALL;
    for s in 0..n(45.0) {
        let sid = format!("S-{s:04}");
        let field = fields[s as usize % fields.len()];
        let region = *rng.pick(regions);
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
            let line = format!(
                r#"{{"event_id":"{}","type":"scenario.stage","occurred_at":"{}","scenario_id":"{sid}","name":"Scenario {s}","field":"{}","region":"{}","stage":"{stage}"}}"#,
                next_id("s"),
                ts(&mut rng, t),
                field.as_str(),
                region.as_str()
            );
            out.push(arrival(&mut rng, t, 0.02), line);
        }
        let mut t = live + rng.below(86_400) as i64 * SECOND;
        let mut users = 50 + rng.below(500);
        while t < retired.min(end) {
            if !rng.chance(0.08) {
                let line = format!(
                    r#"{{"event_id":"{}","type":"scenario.usage","occurred_at":"{}","scenario_id":"{sid}","active_users":{users},"transactions":{},"value_cny":{:.2}}}"#,
                    next_id("s"),
                    ts(&mut rng, t),
                    rng.below(users * 3),
                    rng.unit() * 50_000.0
                );
                out.push(arrival(&mut rng, t, 0.005), line);
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
            let region = regions[p as usize % 4];
            let planned = begin + (rng.unit() * span as f64 * 0.5) as i64;
            let underway = planned + (20 + rng.below(200) as i64) * DAY;
            let delivered = underway + (100 + rng.below(700) as i64) * DAY;
            let cancelled = rng.chance(0.08);
            let mut stages = vec![(planned, "planned"), (underway, "underway")];
            stages.push((delivered, if cancelled { "cancelled" } else { "delivered" }));
            for (t, stage) in stages {
                if t >= end {
                    continue;
                }
                let line = format!(
                    r#"{{"event_id":"{}","type":"project.stage","occurred_at":"{}","project_id":"{pid}","name":"Project {p}","project_kind":"{kind}","region":"{}","stage":"{stage}"}}"#,
                    next_id("s"),
                    ts(&mut rng, t),
                    region.as_str()
                );
                out.push(arrival(&mut rng, t, 0.02), line);
            }
        }
    }

    // Exact duplicates shortly after the original, and a few bad lines.
    let count = out.lines.len();
    for _ in 0..(count / 200) {
        let i = rng.below(count as u64) as usize;
        let (a, _, line) = out.lines[i].clone();
        out.push(a + rng.below(600) as i64 * SECOND, line);
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
        let line = rng
            .pick(&bad)
            .replace("bad-", &format!("bad{}-", rng.below(1 << 40)));
        out.push(t, line);
    }
    let mut lines = out.lines;
    lines.sort_by_key(|(a, seq, _)| (*a, *seq));
    lines.into_iter().map(|(_, _, l)| l).collect()
}

/// Writes the district to a file; returns the number of lines.
pub fn generate_to_file(seed: u64, scale: f64, path: &Path) -> std::io::Result<u64> {
    let lines = generate(seed, scale);
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    for l in &lines {
        f.write_all(l.as_bytes())?;
        f.write_all(b"\n")?;
    }
    f.flush()?;
    Ok(lines.len() as u64)
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
