//! Failpoints: named places that panic on purpose when `PACELINE_FAILPOINT` names them, so
//! that tests can prove a panic anywhere stops the process (exit 1, the panic's message)
//! instead of leaving it stalled behind green probes. Unset, a failpoint costs one load.

use std::sync::OnceLock;

/// Panics when the environment's `PACELINE_FAILPOINT` is `name`.
pub fn check(name: &str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var("PACELINE_FAILPOINT").ok());
    if armed.as_deref() == Some(name) {
        panic!("failpoint `{name}` reached (PACELINE_FAILPOINT)");
    }
}
