//! Input: request bytes into the sans-IO session ([`crate::conn::session`]),
//! and its verdict carried out: answer and close, or start a stream with its
//! preface (response head, gap, replay).

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;

use log::debug;

use super::{Core, Out, Transport, CATCH_UP_ROUNDS, CLOSE_LINGER_MS};
use crate::conn::route::{RouteCtx, StreamRequest};
use crate::conn::session::{self, Step};
use crate::conn::State;

impl<T: Transport> Core<T> {
    /// Bytes read from a connection. Returns false once the connection is
    /// gone, so a driver stops reading it. Input after the head is ignored.
    pub fn on_input(&mut self, token: u64, bytes: &[u8], now_ms: u64) -> bool {
        let Some(key) = self.live(token) else {
            return false;
        };
        if self.conns[key as usize].state != State::ReadingHead {
            return true;
        }
        // The peer's address costs a system call: only for the limiter.
        let peer = if self.shared.limiter.enabled() {
            self.t.peer_ip(self.conns[key as usize].fd.as_fd())
        } else {
            None
        };
        // A reload since the last request: take its settings (one atomic
        // load otherwise).
        self.live.refresh(&self.shared.live);
        let live = &self.live.live;
        let step = session::on_bytes(
            &mut self.conns[key as usize].head,
            bytes,
            &RouteCtx {
                cfg: &live.cfg,
                verifier: &live.verifier,
                status: &self.shared.status,
                limiter: &self.shared.limiter,
                peer,
                now_ms,
            },
        );
        match step {
            Step::Continue => {}
            Step::Respond(body) => self.respond_and_close(key, &body, now_ms),
            Step::Query { app, user, cors } => self.hand_off(key, app, user, cors, now_ms),
            Step::Stream(req) => {
                // Catch up with every event already sent to this reactor
                // first, so that replay and live delivery meet where another
                // reactor's did: no gap, no duplicate.
                for _ in 0..CATCH_UP_ROUNDS {
                    if !self.drain_inbox(now_ms) {
                        break;
                    }
                }
                if self.needs_claim(&req) {
                    self.claim(key, req, now_ms);
                } else {
                    self.begin(key, req, now_ms, false);
                }
            }
        }
        // Any answer above may have closed the connection (a failed write).
        self.live(token).is_some()
    }

    /// Queues a final response, half-closes once it is out, and lingers to
    /// drain input so the response is not lost to a reset.
    pub(super) fn respond_and_close(&mut self, key: u32, bytes: &[u8], now_ms: u64) {
        self.stats.responded(bytes);
        self.note_refusal(key, bytes, now_ms);
        self.set_state(key, State::Closing);
        self.conns[key as usize].head = None;
        if !self.write(key, &[Out::Bytes(bytes)], now_ms) {
            return;
        }
        let conn = &self.conns[key as usize];
        let gen = conn.gen;
        if conn.pending == super::NIL {
            self.t.shutdown_write(conn.fd.as_fd());
        }
        self.lingers.push((key, gen), now_ms + CLOSE_LINGER_MS);
    }

    /// Starts the stream with its `replay` (after `Last-Event-ID`);
    /// `claimed`: the Redis registry already counted it ([`super::claim`]).
    pub(super) fn start_stream(
        &mut self,
        key: u32,
        req: StreamRequest,
        now_ms: u64,
        claimed: bool,
        replay: Option<crate::hub::history::Replay>,
    ) {
        let presence = &self.shared.presence;
        if let (true, Some(user)) = (presence.active(), &req.identity.user) {
            if presence.join(&req.identity.app, user).is_err() {
                let body = session::user_full(&req.cors);
                if claimed {
                    self.unclaim(key, &req.identity);
                }
                return self.respond_and_close(key, &body, now_ms);
            }
        }
        let online = presence.events().then(|| {
            let max_bytes = self.shared.cfg.max_pending_bytes / 2;
            presence.on_connection(&req.identity.app, req.identity.user.as_deref(), max_bytes)
        });
        let cfg = &self.shared.cfg;
        let (retry_ms, on_connect, heartbeat_secs) =
            (cfg.retry_ms, cfg.history_on_connect, cfg.heartbeat_secs);
        let conn_id = self.conn_id(key);
        let preface = session::preface(
            &req,
            replay,
            &self.history,
            &conn_id,
            retry_ms,
            on_connect,
            online.as_ref(),
        );
        if let Some(online) = &online {
            self.keep_view(key, online);
        }
        if req.last_event_id.is_some() {
            self.stats.replays.fetch_add(1, Ordering::Relaxed);
        }
        self.stats
            .history_gaps
            .fetch_add(u64::from(preface.gap.is_some()), Ordering::Relaxed);
        self.stats
            .replayed
            .fetch_add(preface.replay.len() as u64, Ordering::Relaxed);
        let app = self.users.intern_app(&req.identity.app);
        let exp = req.identity.exp;
        self.conns[key as usize].filter = req.filter.map(Box::new);
        let user = match &req.identity.user {
            Some(user) => self.users.get_or_insert(app, user),
            None => super::NIL,
        };
        self.link_stream(key, app, user);
        if let (Some(user), false) = (&req.identity.user, claimed) {
            self.record_open(key, &req.identity.app, user);
        }
        self.set_state(key, State::Streaming);
        let token = self.token_of(key);
        self.t.streaming(self.conns[key as usize].fd.as_fd(), token);
        self.stats.streaming.fetch_add(1, Ordering::Relaxed);
        debug!(
            "conn {key}: stream {conn_id} for app {:?} user {:?}",
            req.identity.app, req.identity.user
        );
        let mut out: Vec<Out<'_>> = Vec::with_capacity(3 + preface.replay.len());
        out.push(Out::Bytes(preface.head.as_bytes()));
        out.extend(preface.on_connection.as_deref().map(Out::Bytes));
        out.extend(preface.gap.as_deref().map(Out::Bytes));
        out.extend(preface.replay.iter().map(Out::Event));
        self.conns[key as usize].events = preface.replay.len() as u32;
        if !self.write(key, &out, now_ms) {
            return;
        }
        let gen = self.conns[key as usize].gen;
        if let Some(wheel) = &mut self.heartbeats {
            wheel.schedule((key, gen), now_ms / 1000 + heartbeat_secs);
        }
        // The leeway the token was admitted with (`JWT_LEEWAY_SECONDS` may
        // change on reload).
        let live = &self.live.live.cfg;
        if let (true, Some(exp)) = (live.close_on_token_expiry, exp) {
            let ends = exp.saturating_add(live.jwt_leeway_secs);
            let conns = &self.conns;
            self.expiries.push((key, gen), ends, |(k, g)| {
                conns.get(k as usize).is_some_and(|c| c.gen == g)
            });
        }
    }
}
