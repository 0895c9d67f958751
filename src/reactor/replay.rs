//! Replay that reaches into the log (SPEC §2, streams mode): a stream whose
//! `Last-Event-ID` is no longer in memory is parked while the log reader
//! (off the reactors) reads what came after it from the stream.
//!
//! Contract:
//! - The reactor never waits. The stream is parked (`Waiting`) with the
//!   oldest log position memory held; a [`LogRequest`] goes to the log
//!   reader and the [`LogAnswer`] comes back through the inbox, in order
//!   with events, so memory as of the answer meets it with no gap and no
//!   duplicate ([`crate::hub::history::History::join`]).
//! - Only ids shaped like log positions are asked about, and only when
//!   memory cannot decide alone (fewer than `HISTORY_SIZE` events held for
//!   the listener after all it walked).
//! - An answer that does not come within [`super::WAIT_TIMEOUT_MS`] starts
//!   the stream from memory alone (with `history-gap`), never a 503.

use super::{Core, Transport, WAIT_TIMEOUT_MS};
use crate::conn::route::StreamRequest;
use crate::conn::session;
use crate::conn::State;
use crate::hub::history::log::{LogAnswer, LogRequest, Pos};
use crate::hub::history::{Replay, EARLIEST};
use crate::hub::registry::ConnRef;

/// Why a stream is parked.
pub(super) enum Wait {
    /// For the cluster's per-user count ([`super::claim`]).
    Claim,
    /// For the log reader; memory's oldest log position when asked.
    Log { before: Option<Pos> },
}

/// A stream that is not running yet.
pub(super) struct Parked {
    pub req: StreamRequest,
    /// The registry counted it (so it must be withdrawn if it never runs).
    pub claimed: bool,
    pub wait: Wait,
}

impl<T: Transport> Core<T> {
    /// Starts a stream whose registry count (if any) is settled, unless its
    /// replay needs the log first.
    pub(super) fn begin(&mut self, key: u32, req: StreamRequest, now_ms: u64, claimed: bool) {
        let replay = session::replay(&req, &self.history);
        let (Some(log), Some(after)) = (&self.shared.log, log_position(&req, replay.as_ref()))
        else {
            return self.start_stream(key, req, now_ms, claimed, replay);
        };
        let before = self.history.oldest_logged();
        let gen = self.conns[key as usize].gen;
        let ask = LogRequest {
            conn: ConnRef {
                reactor: self.index as u16,
                slot: key,
                gen,
            },
            after,
            before,
            app: req.identity.app.as_str().into(),
            user: req.identity.user.as_deref().map(Into::into),
            filter: req.filter.clone(),
        };
        if log.try_send(ask).is_err() {
            // The reader is swamped: memory alone, with its gap.
            return self.start_stream(key, req, now_ms, claimed, replay);
        }
        self.park(
            key,
            Parked {
                req,
                claimed,
                wait: Wait::Log { before },
            },
            now_ms,
        );
    }

    /// Parks a stream (`Waiting`) until its answer or [`WAIT_TIMEOUT_MS`].
    pub(super) fn park(&mut self, key: u32, parked: Parked, now_ms: u64) {
        let gen = self.conns[key as usize].gen;
        self.set_state(key, State::Waiting);
        self.conns[key as usize].head = None;
        self.waits.push((key, gen), now_ms + WAIT_TIMEOUT_MS);
        self.parked.insert(key, parked);
    }

    /// The log reader's answer for a parked stream.
    pub(super) fn on_log(&mut self, answer: LogAnswer, now_ms: u64) {
        let conn = answer.conn;
        let key = conn.slot;
        if conn.reactor as usize != self.index || !self.alive(key, conn.gen) {
            return;
        }
        let Some(Parked {
            req,
            claimed,
            wait: Wait::Log { before },
        }) = self.parked.remove(&key)
        else {
            return;
        };
        let replay = self
            .history
            .join(&session::subscriber(&req), answer, before);
        self.start_stream(key, req, now_ms, claimed, Some(replay));
    }

    /// A log answer that did not come in time: the stream starts from
    /// memory alone. Returns false for a stream not parked for the log.
    pub(super) fn log_timed_out(&mut self, key: u32, now_ms: u64) -> bool {
        if !matches!(
            self.parked.get(&key),
            Some(Parked {
                wait: Wait::Log { .. },
                ..
            })
        ) {
            return false;
        }
        let Some(p) = self.parked.remove(&key) else {
            return false;
        };
        let replay = session::replay(&p.req, &self.history);
        self.start_stream(key, p.req, now_ms, p.claimed, replay);
        true
    }
}

/// The log position to replay from, when memory alone cannot answer.
fn log_position(req: &StreamRequest, replay: Option<&Replay>) -> Option<Pos> {
    if !replay?.unresolved {
        return None;
    }
    let id = req.last_event_id.as_deref()?;
    (id != EARLIEST).then(|| Pos::parse(id)).flatten()
}
