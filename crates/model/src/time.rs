//! Event time and tick arithmetic.
//!
//! Times are nanoseconds since the Unix epoch in an `i64` ([`Nanos`]), which covers the
//! years 1678 to 2261. Ticks are aligned in the plan's time zone, UTC+08:00: a tick grid of
//! cadence `c` is every `ANCHOR + n·c`, where `ANCHOR` is 1970-01-01T00:00+08:00, so daily
//! ticks fall on 00:00+08:00 and hourly ticks on the hour.

/// Nanoseconds since 1970-01-01T00:00:00Z.
pub type Nanos = i64;

/// One second in nanoseconds.
pub const SECOND: Nanos = 1_000_000_000;
/// One hour in nanoseconds.
pub const HOUR: Nanos = 3_600 * SECOND;
/// One day in nanoseconds.
pub const DAY: Nanos = 24 * HOUR;
/// The plan's UTC offset, +08:00, in nanoseconds.
pub const PLAN_OFFSET: Nanos = 8 * HOUR;
/// The origin of every tick grid: 1970-01-01T00:00+08:00.
pub const ANCHOR: Nanos = -PLAN_OFFSET;

/// The greatest tick of the grid `cadence` at or before `t`.
pub fn tick_floor(t: Nanos, cadence: Nanos) -> Nanos {
    // In `i64` when nothing overflows (every time from 1678 to 2261 but the last hours
    // of that range): the dataflow floors a key for every delta, and `i128` division is
    // a library call several times slower.
    let fast = t.checked_sub(ANCHOR).and_then(|rel| {
        rel.div_euclid(cadence)
            .checked_mul(cadence)?
            .checked_add(ANCHOR)
    });
    if let Some(f) = fast {
        return f;
    }
    let rel = t as i128 - ANCHOR as i128;
    let n = rel.div_euclid(cadence as i128);
    clamp_i128(ANCHOR as i128 + n * cadence as i128)
}

/// The first tick of the grid `cadence` strictly after `t`: the first tick whose value
/// includes an event at `t` (a tick aggregates events with `occurred_at < T`).
pub fn tick_after(t: Nanos, cadence: Nanos) -> Nanos {
    tick_floor(t, cadence).saturating_add(cadence)
}

/// The first tick of the grid `cadence` at or after `t`.
pub fn tick_ceil(t: Nanos, cadence: Nanos) -> Nanos {
    let f = tick_floor(t, cadence);
    if f == t {
        f
    } else {
        f.saturating_add(cadence)
    }
}

fn clamp_i128(v: i128) -> Nanos {
    v.clamp(i64::MIN as i128, i64::MAX as i128) as Nanos
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub const fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Whether `year` is a leap year of the proleptic Gregorian calendar.
pub fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Number of days in a month.
pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        _ => 28,
    }
}

/// A calendar quarter, numbered `year * 4 + (q - 1)`.
pub type QuarterIndex = i32;

/// The instant a quarter begins: its first day at 00:00+08:00.
pub fn quarter_start(q: QuarterIndex) -> Nanos {
    let year = q.div_euclid(4) as i64;
    let month = (q.rem_euclid(4) * 3 + 1) as u32;
    days_from_civil(year, month, 1) * DAY - PLAN_OFFSET
}

/// The instant a quarter ends (the next quarter's start).
pub fn quarter_end(q: QuarterIndex) -> Nanos {
    quarter_start(q + 1)
}

/// The last quarter that ended at or before `t` (UTC+08:00).
pub fn last_quarter_ended_by(t: Nanos) -> QuarterIndex {
    let local = t + PLAN_OFFSET;
    let (y, m, _) = civil_from_days(local.div_euclid(DAY));
    let current = (y as i32) * 4 + ((m as i32 - 1) / 3);
    // The current quarter (containing t) began at or before t; the one before it ended then.
    current - 1
}

/// Formats nanoseconds as RFC 3339 in UTC+08:00, e.g. `2024-05-10T00:00:00+08:00`.
pub fn format_plan_time(t: Nanos) -> String {
    let local = t + PLAN_OFFSET;
    let days = local.div_euclid(DAY);
    let rem = local.rem_euclid(DAY);
    let (y, m, d) = civil_from_days(days);
    let secs = rem / SECOND;
    let frac = rem % SECOND;
    let base = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    if frac == 0 {
        format!("{base}+08:00")
    } else {
        format!("{base}.{frac:09}+08:00")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i64, m: u32, d: u32, h: i64) -> Nanos {
        days_from_civil(y, m, d) * DAY + h * HOUR - PLAN_OFFSET
    }

    #[test]
    fn civil_round_trip() {
        for z in [-800_000i64, -1, 0, 1, 19_000, 20_089, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn daily_ticks_fall_on_local_midnight() {
        // 2022-03-14T09:30+08:00 is counted from 2022-03-15T00:00+08:00 on.
        let t = at(2022, 3, 14, 9) + 30 * 60 * SECOND;
        assert_eq!(tick_after(t, DAY), at(2022, 3, 15, 0));
        // An event exactly at a tick is not in that tick.
        let midnight = at(2022, 3, 15, 0);
        assert_eq!(tick_after(midnight, DAY), at(2022, 3, 16, 0));
        assert_eq!(tick_after(midnight - 1, DAY), midnight);
        assert_eq!(tick_floor(midnight, DAY), midnight);
        assert_eq!(tick_ceil(midnight + 1, DAY), at(2022, 3, 16, 0));
        assert_eq!(format_plan_time(midnight), "2022-03-15T00:00:00+08:00");
    }

    #[test]
    fn hourly_ticks_and_negative_times() {
        assert_eq!(tick_after(0, HOUR), HOUR);
        assert_eq!(tick_floor(-1, HOUR), -HOUR);
        assert_eq!(tick_floor(-DAY - 1, DAY), -32 * HOUR);
    }

    /// The `i64` path agrees with the exact `i128` floor, up to the ends of the range
    /// where it gives way to it.
    #[test]
    fn tick_floor_matches_the_exact_floor_at_the_ends() {
        let exact = |t: Nanos, c: Nanos| {
            let rel = t as i128 - ANCHOR as i128;
            clamp_i128(ANCHOR as i128 + rel.div_euclid(c as i128) * c as i128)
        };
        let times = [
            i64::MIN,
            i64::MIN + 1,
            i64::MIN + PLAN_OFFSET,
            -PLAN_OFFSET - 1,
            -PLAN_OFFSET,
            0,
            at(2024, 2, 29, 13) + 17,
            i64::MAX - PLAN_OFFSET - 1,
            i64::MAX - PLAN_OFFSET,
            i64::MAX - 1,
            i64::MAX,
        ];
        for t in times {
            for c in [1, SECOND, HOUR, DAY, 7 * DAY, 91 * DAY] {
                assert_eq!(tick_floor(t, c), exact(t, c), "t {t}, cadence {c}");
            }
        }
    }

    #[test]
    fn quarters_in_plan_time() {
        let q2024_1 = 2024 * 4;
        assert_eq!(quarter_start(q2024_1), at(2024, 1, 1, 0));
        assert_eq!(quarter_end(q2024_1), at(2024, 4, 1, 0));
        // The spec's examples: T − 45 d = 2024-03-26 → last quarter ended is 2023-Q4;
        // T − 45 d = 2024-04-01T00:00+08:00 → 2024-Q1 has just ended.
        assert_eq!(last_quarter_ended_by(at(2024, 3, 26, 0)), 2023 * 4 + 3);
        assert_eq!(last_quarter_ended_by(at(2024, 4, 1, 0)), q2024_1);
        assert_eq!(last_quarter_ended_by(at(2024, 4, 1, 0) - 1), 2023 * 4 + 3);
    }
}

/// Why an RFC 3339 timestamp was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampError {
    /// Not an RFC 3339 `date-time` with an offset (a leap second included).
    Invalid,
    /// Valid, but outside the years 1678–2261 that nanoseconds in an `i64` cover.
    Unrepresentable,
}

/// Parses an RFC 3339 (section 5.6) `date-time` with a required offset into nanoseconds
/// since the epoch. `T`/`t` separate date and time; `Z`, `z` or `±hh:mm` is the offset; any
/// number of fractional digits is accepted and truncated to nanoseconds; `:60` is refused.
pub fn parse_rfc3339(s: &str) -> Result<Nanos, TimestampError> {
    use TimestampError::Invalid;
    let b = s.as_bytes();
    if b.len() < 20 {
        return Err(Invalid);
    }
    let num = |range: std::ops::Range<usize>| -> Result<i64, TimestampError> {
        let mut v = 0i64;
        for &c in &b[range] {
            if !c.is_ascii_digit() {
                return Err(Invalid);
            }
            v = v * 10 + (c - b'0') as i64;
        }
        Ok(v)
    };
    let year = num(0..4)?;
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(Invalid);
    }
    let month = num(5..7)? as u32;
    let day = num(8..10)? as u32;
    let hour = num(11..13)?;
    let minute = num(14..16)?;
    let second = num(17..19)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(Invalid);
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(Invalid);
    }
    let mut i = 19;
    let mut nanos = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        // The first nine digits are the nanoseconds (scaled once at the end, not a
        // division per digit); any further ones are truncated.
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + (b[i] - b'0') as i64;
            }
            i += 1;
        }
        if i == start {
            return Err(Invalid);
        }
        const SCALE: [i64; 10] = [
            1_000_000_000,
            100_000_000,
            10_000_000,
            1_000_000,
            100_000,
            10_000,
            1_000,
            100,
            10,
            1,
        ];
        nanos *= SCALE[(i - start).min(9)];
    }
    let offset_s = match b.get(i) {
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() => {
            if b[i + 3] != b':' {
                return Err(Invalid);
            }
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            if oh > 23 || om > 59 {
                return Err(Invalid);
            }
            let o = oh * 3600 + om * 60;
            if sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return Err(Invalid),
    };
    let days = days_from_civil(year, month, day) as i128;
    let secs = days * 86_400 + (hour * 3600 + minute * 60 + second - offset_s) as i128;
    let total = secs * SECOND as i128 + nanos as i128;
    i64::try_from(total).map_err(|_| TimestampError::Unrepresentable)
}

#[cfg(test)]
mod rfc3339_tests {
    use super::*;

    #[test]
    fn accepts_the_spec_forms() {
        let base = parse_rfc3339("2023-04-01T09:30:00+08:00").unwrap();
        assert_eq!(parse_rfc3339("2023-04-01T01:30:00Z").unwrap(), base);
        assert_eq!(parse_rfc3339("2023-04-01t01:30:00z").unwrap(), base);
        assert_eq!(parse_rfc3339("2023-03-31T20:30:00-05:00").unwrap(), base);
        assert_eq!(
            parse_rfc3339("2023-04-01T01:30:00.5Z").unwrap(),
            base + SECOND / 2
        );
        assert_eq!(
            parse_rfc3339("2023-04-01T01:30:00.1234567891234Z").unwrap(),
            base + 123_456_789
        );
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z").unwrap() % DAY, 0);
    }

    /// A fraction of any length is its first nine digits, padded with zeros: the
    /// nanoseconds written out.
    #[test]
    fn fractions_of_every_length_truncate_to_nanoseconds() {
        let base = parse_rfc3339("2023-04-01T01:30:00Z").unwrap();
        let digits = "987654321987";
        for len in 1..=digits.len() {
            let fraction = &digits[..len];
            let nanos: i64 = format!("{:0<9}", &fraction[..len.min(9)]).parse().unwrap();
            let text = format!("2023-04-01T01:30:00.{fraction}Z");
            assert_eq!(parse_rfc3339(&text).unwrap(), base + nanos, "{text}");
        }
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "2023-06-30 16:00:00",
            "2023-06-30T16:00:00",
            "2023-06-30 16:00:00Z",
            "2023-06-30T23:59:60Z",
            "2023-02-29T00:00:00Z",
            "2023-13-01T00:00:00Z",
            "2023-06-30T24:00:00Z",
            "2023-06-30T16:00:00.Z",
            "2023-06-30T16:00:00+0800",
            "2023-06-30T16:00:00+08:00 ",
            "2023-6-30T16:00:00Z",
            "",
            "２０２３-06-30T16:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), Err(TimestampError::Invalid), "{bad}");
        }
        assert_eq!(
            parse_rfc3339("1500-01-01T00:00:00Z"),
            Err(TimestampError::Unrepresentable)
        );
    }
}
