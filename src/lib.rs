//! # herald
//!
//! A Server-Sent Events push server built for very many mostly idle
//! connections on one box.
//!
//! ```text
//! backend ──PUBLISH/XADD──► Redis ──► ingest thread ─┐
//! backend ──POST /publish (admin)──► Hub ──Arc<Event> batch + eventfd──► reactor k (one per core)
//!                                                                         │ SO_REUSEPORT listener
//!                                                                         │ epoll or io_uring driver
//! browser ──GET /sse?token=JWT────────────────────────────────────────────┘ core: slab, users, history
//! ```
//!
//! Data flows one way: socket → [`conn::http`] (head) → [`conn::route`] and
//! [`conn::auth`] → a stream in a [`reactor`]; and envelope →
//! [`hub::envelope`] → [`hub::Event`] (encoded once, `Arc`-shared) → every
//! reactor's [`hub::inbox`] → matching connections → socket.
//!
//! The layers, top to bottom (each may use only those below it):
//! - [`server`]: boot order and shutdown; picks the I/O driver.
//!   [`reload`]: `SIGHUP`, the settings that change with listeners kept.
//! - [`admin`]: the admin listener (health, stats, metrics, publish,
//!   connections) and the thread answering the public listener's
//!   connection listings; reads reactor counters through
//!   [`reactor::stats::Counters`] only. Beside it, on its own small tokio
//!   runtime when `GRPC_ADDR` is set, the gRPC management API
//!   ([`admin::grpc`]), which calls the same functions.
//! - [`cluster`]: the connection directory (this node's reactors, or the
//!   Redis registry shared by every node), its writer and watcher threads:
//!   cluster presence and cross-node `DELETE`.
//! - [`ingest`]: the Redis ingest thread (pub/sub, streams); writes
//!   [`hub::status`], hands events to the [`hub::Hub`].
//! - [`reactor`]: one reactor per core. [`reactor::Core`] is the
//!   backend-independent core (slab with generation tokens, user index,
//!   history, timers, delivery matching, write-queue policy) and makes no
//!   system call; [`reactor::driver`] holds the epoll and io_uring loops that
//!   feed it through [`reactor::Transport`].
//! - [`presence`]: who is online in this process (per-user stream counts
//!   shared by the reactors), and the feed that announces joins and leaves
//!   through the hub.
//! - [`conn`]: one connection, sans-IO: [`conn::session`] takes bytes and
//!   returns what to do; parsing, routing, auth, responses.
//! - [`hub`]: events, envelopes, ids, SSE encoding, filters, history, the
//!   inbox type, ingest status. Time is passed in; it never imports a
//!   reactor.
//! - [`config`], [`logging`], [`doctor`]: configuration table, logs, host
//!   checks.
//! - [`sys`]: the only `unsafe` code: sockets, epoll, io_uring, eventfd,
//!   rlimits, clocks, sd_notify.
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod admin;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod doctor;
pub mod hub;
pub mod ingest;
pub mod logging;
pub mod presence;
pub mod reactor;
pub mod reload;
pub mod server;
pub mod sys;
