//! Everything that talks to the kernel directly, one file per facility.
//!
//! This is the only module allowed to hold `unsafe` code; every block carries a
//! `// SAFETY:` comment. The rest of the crate sees plain, safe functions:
//!
//! - [`net`]: listening sockets (`SO_REUSEPORT`, backlog, non-blocking) and
//!   `accept4` that returns an owned fd plus the peer address.
//! - [`poll`]: the epoll instance and the eventfd waker of a reactor.
//! - [`uring`]: an io_uring with its provided-buffer ring, as a safe API
//!   (buffers owned until their completion), and the start-up probe.
//! - [`limits`]: `RLIMIT_NOFILE` raising and reading.
//! - [`clock`]: wall-clock seconds and milliseconds.
//! - [`notify`]: systemd `sd_notify` (READY, STOPPING, watchdog) over
//!   `NOTIFY_SOCKET`, without libsystemd.
#![allow(unsafe_code)]

pub mod clock;
pub mod limits;
pub mod net;
pub mod notify;
pub mod poll;
pub mod uring;
