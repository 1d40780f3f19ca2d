//! The wall clock as the service reads it. The system's clock, followed as long as it
//! moves as time does; a step of more than [`JUMP`] either way (an NTP step, a VM resumed,
//! a clock set by hand) is not followed: time then goes on from where it was with the
//! monotonic clock, until the system's clock agrees again. So a jump alone cannot move an
//! idle stream's watermark days ahead (turning later events `too_late` and writing ticks
//! beyond the real time), cannot make current events look too far in the future
//! (`out_of_range`), and cannot freeze or rush a cluster's epochs. Every reader of "now" in
//! the pipeline (watermarks, admission's future bound, epochs, the restore's rewrite)
//! reads it here.
//!
//! A jump is counted ([`jumps`]) and its size kept ([`last_jump`]); a process started on a
//! wrong clock keeps it until restarted.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::time::SECOND;
use crate::Nanos;

/// The largest step of the system's clock that is followed.
pub const JUMP: Nanos = 5 * SECOND;

/// The system's time at a monotonic instant: now is it plus the monotonic time since.
struct Anchor {
    at: Instant,
    wall: Nanos,
}

static ANCHOR: Mutex<Option<Anchor>> = Mutex::new(None);
static JUMPS: AtomicU64 = AtomicU64::new(0);
static LAST_JUMP: AtomicI64 = AtomicI64::new(0);
/// The system clock's offset from the service's while it is not followed (0: followed).
static OFF: AtomicI64 = AtomicI64::new(0);

fn system_now() -> Nanos {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as Nanos)
}

/// Now, in nanoseconds since the Unix epoch, as the service reads it (above).
pub fn now() -> Nanos {
    now_from(system_now())
}

fn now_from(real: Nanos) -> Nanos {
    let mut guard = ANCHOR.lock().unwrap_or_else(|p| p.into_inner());
    let anchor = guard.get_or_insert(Anchor {
        at: Instant::now(),
        wall: real,
    });
    let derived = anchor
        .wall
        .saturating_add(anchor.at.elapsed().as_nanos() as Nanos);
    let off = real.saturating_sub(derived);
    if off.abs() <= JUMP {
        *anchor = Anchor {
            at: Instant::now(),
            wall: real,
        };
        OFF.store(0, Ordering::Relaxed);
        return real;
    }
    // A new jump (not the same one seen again): counted once.
    let before = OFF.swap(off, Ordering::Relaxed);
    if (off - before).abs() > JUMP {
        JUMPS.fetch_add(1, Ordering::Relaxed);
        LAST_JUMP.store(off, Ordering::Relaxed);
    }
    derived
}

/// Jumps of the system's clock seen (and not followed) since the start.
pub fn jumps() -> u64 {
    JUMPS.load(Ordering::Relaxed)
}

/// The last jump's size (positive: the system's clock went ahead), in nanoseconds.
pub fn last_jump() -> Nanos {
    LAST_JUMP.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::DAY;

    /// One test for the process-wide clock: its anchor is shared.
    #[test]
    fn steps_are_not_followed_and_agreement_is() {
        let start = system_now();
        assert!((now_from(start) - start).abs() < SECOND);
        // Three days ahead, for a while: time goes on from where it was.
        let ahead = now_from(start + 3 * DAY);
        assert!(
            (ahead - start).abs() < SECOND,
            "not followed: {}",
            ahead - start
        );
        assert_eq!(jumps(), 1);
        assert_eq!((last_jump() as f64 / DAY as f64).round(), 3.0);
        let again = now_from(start + 3 * DAY + SECOND);
        assert!((again - start).abs() < SECOND);
        assert_eq!(jumps(), 1, "the same jump is counted once");
        // Back: followed again.
        let back = system_now();
        assert!((now_from(back) - back).abs() < SECOND);
        // Two days behind.
        let behind = now_from(back - 2 * DAY);
        assert!(
            (behind - back).abs() < SECOND,
            "not followed: {}",
            behind - back
        );
        assert_eq!(jumps(), 2);
        assert_eq!((last_jump() as f64 / DAY as f64).round(), -2.0);
        // Small differences (a slewed clock) are followed.
        let near = system_now() + SECOND;
        assert_eq!(now_from(near), near);
    }
}
