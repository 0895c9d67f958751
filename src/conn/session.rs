//! The sans-IO life of one connection before it streams: bytes and `now` in,
//! what to do out. A driver reads; the reactor core feeds the bytes here and
//! carries out the [`Step`]. Nothing here touches a socket or a clock.
//!
//! Contract:
//! - A head may arrive in any number of pieces. The common case (a whole head
//!   in one read) is parsed straight from the caller's buffer; only a split
//!   head is copied into the connection's [`HeadBuf`].
//! - A head over 8 KiB is answered 431, a malformed one 400, both problem+json.
//! - A head that is not complete at the header timeout is answered 408 when
//!   some of it arrived, and closed silently when nothing did.
//! - Routing and JWT verification happen once, on the complete head.
//! - [`preface`] decides replay: what a new stream gets before live events.

use std::sync::Arc;

use super::http::{parse_head, Head, Method};
use super::response::{self, Problem};
use super::route::{route, Action, RouteCtx, StreamRequest};
use crate::hub::history::{gap_frame, History, Replay, Subscriber};
use crate::hub::{sse, Event};

/// Request bytes held while a head arrives in pieces. Boxed so that an idle
/// streaming connection pays 8 bytes for it, not 24.
#[allow(clippy::box_collection)]
pub type HeadBuf = Option<Box<Vec<u8>>>;

/// What the core does next with a connection that is reading its head.
#[derive(Debug)]
pub enum Step {
    /// The head is not complete: keep reading.
    Continue,
    /// Send these bytes, then close.
    Respond(Vec<u8>),
    /// Start streaming.
    Stream(StreamRequest),
    /// Wait for the answer to a connection listing, asked off the reactor.
    Query {
        app: String,
        user: Option<String>,
        cors: String,
    },
}

/// Feeds `bytes` (the next piece read) to a connection reading its head.
pub fn on_bytes(buf: &mut HeadBuf, bytes: &[u8], ctx: &RouteCtx<'_>) -> Step {
    let head = match buf.as_mut() {
        None => parse_head(bytes),
        Some(held) => {
            held.extend_from_slice(bytes);
            parse_head(held)
        }
    };
    match head {
        Head::Partial => {
            if buf.is_none() {
                *buf = Some(Box::new(bytes.to_vec()));
            }
            Step::Continue
        }
        Head::Complete(req) => {
            *buf = None;
            match route(&req, ctx) {
                Action::Respond(bytes) if req.method() == Method::Head => {
                    Step::Respond(response::head_only(bytes))
                }
                Action::Respond(bytes) => Step::Respond(bytes),
                Action::Stream(s) => Step::Stream(s),
                Action::Query { app, user, cors } => Step::Query { app, user, cors },
            }
        }
        Head::TooLarge => {
            *buf = None;
            Step::Respond(response::problem(
                Problem::HeadersTooLarge,
                "request line and headers must fit in 8 KiB",
                "",
            ))
        }
        Head::Bad(detail) => {
            *buf = None;
            Step::Respond(response::problem(Problem::BadRequest, detail, ""))
        }
    }
}

/// What a connection still reading its head gets at the header timeout:
/// a 408 when part of a head arrived, `None` (close silently) when nothing
/// did.
pub fn on_header_timeout(buf: &HeadBuf) -> Option<Vec<u8>> {
    buf.as_ref().is_some_and(|b| !b.is_empty()).then(|| {
        response::problem(
            Problem::RequestTimeout,
            "request head not complete within HEADER_TIMEOUT_MS",
            "",
        )
    })
}

/// The answer to a connection over `MAX_CONNECTIONS`.
pub fn server_full() -> Vec<u8> {
    response::problem(
        Problem::ServerFull,
        "server has reached MAX_CONNECTIONS",
        "Retry-After: 5\r\n",
    )
}

/// The answer to a user over `MAX_CONNECTIONS_PER_USER`.
pub fn user_full(cors: &str) -> Vec<u8> {
    response::problem(
        Problem::ServerFull,
        "this user has reached MAX_CONNECTIONS_PER_USER",
        &format!("{cors}Retry-After: 5\r\n"),
    )
}

/// What a new stream is sent before live events, in order: the response
/// head with the `retry:` preface, the `on-connection` presence event when
/// presence events are on, a `history-gap` event when the `Last-Event-ID`
/// is no longer held, then the replayed events.
pub struct Preface {
    pub head: String,
    pub on_connection: Option<Vec<u8>>,
    pub gap: Option<Vec<u8>>,
    pub replay: Vec<Arc<Event>>,
}

/// The replay after a stream's `Last-Event-ID` from memory alone (`None`
/// without one).
pub fn replay(req: &StreamRequest, history: &History) -> Option<Replay> {
    let id = req.last_event_id.as_deref()?;
    Some(history.replay(&subscriber(req), id))
}

/// Who a stream request is, for the history.
pub fn subscriber(req: &StreamRequest) -> Subscriber<'_> {
    Subscriber {
        app: &req.identity.app,
        user: req.identity.user.as_deref(),
        filter: req.filter.as_ref(),
    }
}

/// Decides a new stream's preface: `online` (the `on-connection` data, when
/// presence events are on), then `replay` (after `Last-Event-ID`, see
/// [`replay`]), or the last `history_on_connect` events for a listener
/// without one.
pub fn preface(
    req: &StreamRequest,
    replay: Option<Replay>,
    history: &History,
    conn_id: &uuid::Uuid,
    retry_ms: u64,
    history_on_connect: usize,
    online: Option<&serde_json::Value>,
) -> Preface {
    let mut head = response::stream_head(conn_id, &req.cors);
    head.push_str(&sse::retry_preface(retry_ms));
    let (gap, replay) = match (replay, &req.last_event_id) {
        (Some(r), Some(id)) => (r.gap.then(|| gap_frame(id)), r.events),
        _ => (None, history.recent(&subscriber(req), history_on_connect)),
    };
    let on_connection = online
        .map(|users| sse::encode_event(None, Some("on-connection"), sse::Payload::Json(users)));
    Preface {
        head,
        on_connection,
        gap,
        replay,
    }
}
