//! What every test of the workspace shares, so that the suite cannot flake on a loaded
//! machine: loopback ports that no other test process takes, and deadlines scaled by one
//! factor, `PACELINE_TEST_PATIENCE`.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

/// The factor every test deadline is multiplied by: `PACELINE_TEST_PATIENCE` (a number
/// of at least 1, e.g. `3` on a slow or crowded machine), 1 when unset.
///
/// # Panics
/// When the variable is set to anything but a number of at least 1: a typo must not pass
/// silently as the default.
pub fn patience() -> f64 {
    match std::env::var("PACELINE_TEST_PATIENCE") {
        Err(_) => 1.0,
        Ok(v) => match v.trim().parse::<f64>() {
            Ok(f) if f >= 1.0 && f.is_finite() => f,
            _ => panic!("PACELINE_TEST_PATIENCE: {v:?} is not a number of at least 1"),
        },
    }
}

/// `deadline` scaled by [`patience`]: how long a test waits for something that takes
/// `deadline` on an ordinary machine.
pub fn patient(deadline: Duration) -> Duration {
    deadline.mul_f64(patience())
}

/// A free TCP port on 127.0.0.1, picked below Linux's ephemeral range (32768 and up): a
/// port the kernel hands out for `:0` is also the local end of outgoing connections, and
/// one of those taking it before the service binds it failed a start with "address in
/// use" when tests ran side by side.
///
/// # Panics
/// When no port of the range is free.
pub fn free_port() -> u16 {
    use std::collections::BTreeSet;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, OnceLock};
    const LOW: u64 = 20_000;
    const SPAN: u64 = 12_000;
    // Random picks (keys random per process), so that test processes started together do
    // not walk the same ports.
    // Never the same port twice in a process: one handed out may not be bound yet.
    static KEYS: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    static TRIES: AtomicU64 = AtomicU64::new(0);
    let keys = KEYS.get_or_init(std::collections::hash_map::RandomState::new);
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..SPAN * 4 {
        let mut h = keys.build_hasher();
        h.write_u64(TRIES.fetch_add(1, Ordering::Relaxed));
        let port = (LOW + h.finish() % SPAN) as u16;
        if !given.contains(&port)
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
            && reserve_port(port)
        {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN)
}

/// Claims `port` for this process among every test process of the machine: a file named
/// for it holding our pid, taken over only from a process that is gone. A service stopped
/// for an outage leaves its port unbound for a while, and another test process must not
/// pick it then (an InfluxDB restarted on a port taken meanwhile never answered).
fn reserve_port(port: u16) -> bool {
    use std::io::Write;
    let dir = std::env::temp_dir().join("paceline-test-ports");
    if std::fs::create_dir_all(&dir).is_err() {
        return true;
    }
    let path = dir.join(port.to_string());
    let me = std::process::id();
    let claim = |create_new: bool| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(create_new)
            .truncate(!create_new)
            .open(&path)
            .and_then(|mut f| write!(f, "{me}"))
            .is_ok()
    };
    if claim(true) {
        return true;
    }
    let holder = std::fs::read_to_string(&path).unwrap_or_default();
    let alive = holder
        .trim()
        .parse::<u32>()
        .is_ok_and(|pid| pid == me || Path::new(&format!("/proc/{pid}")).exists());
    // Two processes taking over the same stale claim: the pid read back says who won.
    !alive
        && claim(false)
        && std::fs::read_to_string(&path).is_ok_and(|h| h.trim() == me.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_never_given_twice_and_are_bindable() {
        let ports: Vec<u16> = (0..20).map(|_| free_port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "{ports:?}");
        for p in ports {
            assert!((20_000..32_000).contains(&p), "{p}");
            assert!(TcpListener::bind(("127.0.0.1", p)).is_ok(), "{p}");
        }
    }
}
