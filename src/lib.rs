//! # herald
//!
//! A Server-Sent Events push server built for very many mostly idle
//! connections on one box.
//!
//! ```text
//! backend ──PUBLISH/XADD──► Redis ──► ingest thread ─┐
//! backend ──POST /publish (admin)──► Hub ──Arc<Event> batch + eventfd──► reactor k (one per core)
//!                                                                         │ SO_REUSEPORT listener
//!                                                                         │ epoll, slab of Conn
//! browser ──GET /sse?token=JWT────────────────────────────────────────────┘ user index, writev
//! ```
//!
//! Data flows one way. Socket → [`conn::http`] (head parsing) → [`conn::route`]
//! (routing) → [`conn::auth`] (JWT) → a streaming connection in a
//! [`reactor`]. Envelope → [`hub::envelope`] (decoded once) → [`hub::Event`]
//! (SSE frame encoded once, `Arc`-shared) → every reactor's inbox → matching
//! connections → socket.
//!
//! Modules:
//! - [`config`]: every environment variable, default and validation.
//! - [`server`]: boot order and shutdown.
//! - [`sys`]: the only `unsafe` code: sockets, epoll, eventfd, rlimits.
//! - [`reactor`]: the per-core loop, user index, timers, write path.
//! - [`conn`]: connection state, HTTP head parsing, routing, auth, responses.
//! - [`hub`]: events, envelopes, ids, SSE encoding, filters, fan-out.
//! - [`ingest`]: the Redis ingest thread (pub/sub, streams), health state.
//! - [`admin`]: the admin listener (health, stats, publish).
//! - [`logging`]: text or JSON-lines logs on stdout.
//! - [`doctor`]: `herald doctor`, host checks against the configuration.
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod admin;
pub mod config;
pub mod conn;
pub mod doctor;
pub mod hub;
pub mod ingest;
pub mod logging;
pub mod reactor;
pub mod server;
pub mod sys;
