//! What this build is: its version and git revision, for `paceline_build_info` and
//! `--version`. The binary sets the revision it was built from (its build script reads git
//! or `PACELINE_REVISION`); a library user that sets none reads `unknown`.

use std::sync::OnceLock;

static REVISION: OnceLock<&'static str> = OnceLock::new();

/// Records the build's git revision (once; later calls are ignored).
pub fn set_revision(revision: &'static str) {
    let _ = REVISION.set(revision);
}

/// The build's git revision, or `unknown`.
pub fn revision() -> &'static str {
    REVISION.get().copied().unwrap_or("unknown")
}
