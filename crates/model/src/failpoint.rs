//! Failpoints: named places that fail on purpose when `PACELINE_FAILPOINT` names them, so
//! that tests can prove a panic anywhere stops the process (exit 1, the panic's message)
//! instead of leaving it stalled behind green probes (`name`), and that a thread stuck for
//! good turns `/healthz` red (`name:stall`). Where several threads share a place,
//! `name.<i>` names thread `i` alone. Unset, a failpoint costs one load.

use std::sync::OnceLock;

fn armed() -> Option<&'static str> {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    ARMED
        .get_or_init(|| std::env::var("PACELINE_FAILPOINT").ok())
        .as_deref()
}

/// Panics when the environment's `PACELINE_FAILPOINT` is `name`; never returns when it is
/// `name:stall` (as a deadlock would leave the thread).
pub fn check(name: &str) {
    if let Some(armed) = armed() {
        fire(armed, name, None);
    }
}

/// [`check`] for one of several threads of a kind: fires for `name` (every one of them)
/// and for `name.<index>` (that one alone), each with `:stall` too.
pub fn check_at(name: &str, index: usize) {
    if let Some(armed) = armed() {
        fire(armed, name, Some(index));
    }
}

fn fire(armed: &str, name: &str, index: Option<usize>) {
    match what_to_do(armed, name, index) {
        Some(Action::Panic) => panic!("failpoint `{armed}` reached (PACELINE_FAILPOINT)"),
        Some(Action::Stall) => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
        None => {}
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Action {
    Panic,
    Stall,
}

/// What the armed failpoint asks of the place `name` (of thread `index`), if anything.
fn what_to_do(armed: &str, name: &str, index: Option<usize>) -> Option<Action> {
    let (point, action) = match armed.strip_suffix(":stall") {
        Some(point) => (point, Action::Stall),
        None => (armed, Action::Panic),
    };
    let this_one = point == name
        || index.is_some_and(|i| {
            point
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|n| n.parse() == Ok(i))
        });
    this_one.then_some(action)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failpoint_names_its_place_and_optionally_one_thread() {
        assert_eq!(what_to_do("http", "http", None), Some(Action::Panic));
        assert_eq!(what_to_do("http:stall", "http", None), Some(Action::Stall));
        assert_eq!(what_to_do("http", "https", None), None);
        assert_eq!(what_to_do("worker", "worker", Some(3)), Some(Action::Panic));
        assert_eq!(
            what_to_do("worker.1:stall", "worker", Some(1)),
            Some(Action::Stall)
        );
        assert_eq!(what_to_do("worker.1:stall", "worker", Some(0)), None);
        assert_eq!(what_to_do("worker.1", "worker", None), None);
        assert_eq!(what_to_do("worker.10", "worker", Some(1)), None);
        assert_eq!(what_to_do("worker.x", "worker", Some(0)), None);
    }
}
