//! One client connection on the public listener: its state machine, request
//! parsing, routing and authentication, SSE and response encoding.
//!
//! Everything here is plain code over bytes and time: the reactor reads and
//! writes sockets and feeds this module; nothing in here touches a socket.

pub mod auth;
pub mod http;
pub mod ratelimit;
pub mod response;
pub mod route;
pub mod session;

use std::fmt;

/// Where a connection is in its life. Transitions go through
/// `Reactor::set_state`, which logs `A => B` at trace level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Reading the request head (a read buffer exists only in this state).
    ReadingHead,
    /// Streaming events; the request was accepted.
    Streaming,
    /// Waiting for an answer computed off the reactor (a connection
    /// listing); input is ignored meanwhile.
    Waiting,
    /// A final response was queued; draining input until the peer closes or
    /// the linger deadline passes.
    Closing,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::ReadingHead => "reading-head",
            State::Streaming => "streaming",
            State::Waiting => "waiting",
            State::Closing => "closing",
        })
    }
}
