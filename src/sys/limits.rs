//! Process resource limits.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the new soft
/// limit. On failure the current soft limit is returned unchanged.
pub fn raise_nofile() -> u64 {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => 1024,
    }
}

/// Turns transparent huge pages off for this process (`PR_SET_THP_DISABLE`).
///
/// The allocator asks for huge pages on its arenas; with THP in `madvise`
/// mode every size class then faults a whole 2 MiB page, which made idle
/// listeners cost ~1.2 KB each instead of ~0.2 KB (BENCHMARKS.md). Returns
/// false when the kernel refuses.
pub fn disable_thp() -> bool {
    nix::sys::prctl::set_thp_disable(true).is_ok()
}
