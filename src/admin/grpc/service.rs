//! `sse.SSEManagementService`: each method is a token check, then the
//! admin listener's own function for the same thing, its answer converted
//! to protobuf. Calls that block (the directory, the hub) run on the
//! runtime's blocking threads.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::pb::{self, sse_management_service_server::SseManagementService};
use super::WATCH_QUEUE;
use crate::admin::connections::{self, Refused};
use crate::admin::report::StatsReport;
use crate::admin::{bearer_ok, body, Admin};
use crate::conn::http::bearer_token;
use crate::hub::registry::ConnInfo;
use crate::presence::{Change, Presence, Tap};

/// Clients listed when `limit` is 0.
pub const DEFAULT_LIMIT: usize = 100;
/// Clients listed at most, whatever `limit` says.
pub const MAX_LIMIT: usize = 10_000;

/// The service: the admin listener's state, and presence for the feed.
pub struct Api {
    pub admin: Arc<Admin>,
    pub presence: Arc<Presence>,
}

impl Api {
    /// `UNAUTHENTICATED` unless the call's `authorization` metadata holds
    /// `ADMIN_TOKEN` (or, for `publish`, `PUBLISH_TOKEN`); open when no
    /// token is set ([`bearer_ok`], the admin listener's check).
    fn check<T>(&self, req: &Request<T>, publish: bool, method: &str) -> Result<(), Status> {
        let cfg = &self.admin.cfg;
        let bearer = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token);
        let (tokens, needs): (&[&Option<String>], _) = if publish {
            (
                &[&cfg.publish_token, &cfg.admin_token],
                "PUBLISH_TOKEN or ADMIN_TOKEN",
            )
        } else {
            (&[&cfg.admin_token], "ADMIN_TOKEN")
        };
        if bearer_ok(bearer, tokens) {
            Ok(())
        } else {
            Err(Status::unauthenticated(format!(
                "sse.SSEManagementService/{method} needs metadata authorization: Bearer <{needs}>"
            )))
        }
    }

    /// Runs a blocking call off the runtime's thread.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Admin) -> T + Send + 'static,
    ) -> Result<T, Status> {
        let admin = self.admin.clone();
        tokio::task::spawn_blocking(move || f(&admin))
            .await
            .map_err(|e| Status::internal(format!("call failed: {e}")))
    }
}

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl SseManagementService for Api {
    async fn get_stats(&self, req: Request<pb::GetStatsRequest>) -> Answer<pb::GetStatsResponse> {
        self.check(&req, false, "GetStats")?;
        Ok(Response::new(stats(self.admin.stats())))
    }

    async fn get_clients(
        &self,
        req: Request<pb::GetClientsRequest>,
    ) -> Answer<pb::GetClientsResponse> {
        self.check(&req, false, "GetClients")?;
        let r = req.into_inner();
        let (app, user) = (r.app.clone(), r.user.clone());
        let conns = self
            .blocking(move |a| a.dir.list_local(app.as_deref(), user.as_deref()))
            .await?;
        Ok(Response::new(page(conns, &r)))
    }

    async fn disconnect_client(
        &self,
        req: Request<pb::DisconnectClientRequest>,
    ) -> Answer<pb::DisconnectClientResponse> {
        self.check(&req, false, "DisconnectClient")?;
        let id = req.into_inner().client_id;
        if id.is_empty() {
            return Err(Status::invalid_argument("client_id is empty"));
        }
        match self
            .blocking(move |a| connections::disconnect(&a.dir, &id))
            .await?
        {
            Ok(()) => Ok(Response::new(pb::DisconnectClientResponse {
                disconnected: true,
            })),
            Err(Refused::NotFound(detail)) => Err(Status::not_found(detail)),
            Err(Refused::Unavailable(detail)) => Err(Status::unavailable(detail)),
        }
    }

    async fn get_health(
        &self,
        req: Request<pb::GetHealthRequest>,
    ) -> Answer<pb::GetHealthResponse> {
        self.check(&req, false, "GetHealth")?;
        let (status, redis) = self.admin.status.health();
        Ok(Response::new(pb::GetHealthResponse {
            status: status.into(),
            redis: redis.into(),
            kafka: self.admin.status.kafka().name().into(),
        }))
    }

    async fn publish(&self, req: Request<pb::PublishRequest>) -> Answer<pb::PublishResponse> {
        self.check(&req, true, "Publish")?;
        let json = req.into_inner().json;
        let max = self.admin.cfg.publish_max_bytes;
        if json.len() > max {
            return Err(Status::invalid_argument(body::too_large(json.len(), max)));
        }
        match self
            .blocking(move |a| a.publish_body(json.as_bytes()))
            .await?
        {
            Ok(n) => Ok(Response::new(pb::PublishResponse { accepted: n as u64 })),
            Err(detail) => Err(Status::invalid_argument(detail)),
        }
    }

    type WatchPresenceStream = ReceiverStream<Result<pb::PresenceEvent, Status>>;

    async fn watch_presence(
        &self,
        req: Request<pb::WatchPresenceRequest>,
    ) -> Answer<Self::WatchPresenceStream> {
        self.check(&req, false, "WatchPresence")?;
        if !self.presence.events() {
            return Err(Status::failed_precondition(
                "presence events are off: set INTERNAL_EVENTS_STRATEGY=generate",
            ));
        }
        // One more slot: the last is kept for the end of a watcher who fell
        // behind.
        let (tx, rx) = mpsc::channel(WATCH_QUEUE + 1);
        self.presence.watchers.add(tap(tx, req.into_inner().app));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

type Watch = mpsc::Sender<Result<pb::PresenceEvent, Status>>;

/// A watcher's tap: its app's changes into `tx`, never blocking. The last
/// free slot is kept for the `RESOURCE_EXHAUSTED` that ends a watcher who
/// fell behind; a watcher gone (or ended) drops the tap.
fn tap(tx: Watch, app: Option<String>) -> Tap {
    Box::new(move |change| {
        let Some(event) = presence_event(change, app.as_deref()) else {
            return !tx.is_closed();
        };
        if tx.capacity() > 1 {
            return tx.try_send(Ok(event)).is_ok();
        }
        let _ = tx.try_send(Err(Status::resource_exhausted(format!(
            "more than {} presence changes unread: watch again",
            tx.max_capacity() - 1
        ))));
        false
    })
}

/// `change` as a [`pb::PresenceEvent`], when it is in `app` (or `app` is
/// unset).
fn presence_event(change: &Change, app: Option<&str>) -> Option<pb::PresenceEvent> {
    let (event, a, user) = match change {
        Change::Joined { app, user } => ("user-connected", app, user),
        Change::Left { app, user } => ("user-disconnected", app, user),
    };
    app.is_none_or(|want| want == &**a)
        .then(|| pb::PresenceEvent {
            event: event.into(),
            app: a.to_string(),
            user_id: user.to_string(),
        })
}

/// The listing narrowed to `r.user`, ordered by (`created_at`, id), paged.
fn page(mut conns: Vec<ConnInfo>, r: &pb::GetClientsRequest) -> pb::GetClientsResponse {
    if let Some(user) = &r.user {
        conns.retain(|c| &*c.user == user.as_str());
    }
    conns.sort_unstable_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let limit = match r.limit as usize {
        0 => DEFAULT_LIMIT,
        n => n.min(MAX_LIMIT),
    };
    let total = conns.len() as u64;
    let clients = conns
        .into_iter()
        .skip(r.offset as usize)
        .take(limit)
        .map(|c| pb::Client {
            id: c.id,
            app: c.app.into(),
            user: c.user.into(),
            remote_addr: c.remote_addr,
            created_at: c.created_at,
            events_sent: c.events_sent,
            bytes_pending: c.bytes_pending,
        })
        .collect();
    pb::GetClientsResponse { clients, total }
}

/// `GET /stats` as a [`pb::GetStatsResponse`], field by field.
fn stats(s: StatsReport) -> pb::GetStatsResponse {
    let by_name = |m: std::collections::BTreeMap<&'static str, u64>| {
        m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    };
    pb::GetStatsResponse {
        connections: s.connections,
        streaming: s.streaming,
        accepted_total: s.accepted_total,
        accept_errors_total: s.accept_errors_total,
        refused_full_total: s.refused_full_total,
        slow_disconnects_total: s.slow_disconnects_total,
        disconnects_total: s.disconnects_total,
        disconnects: by_name(s.disconnects),
        refusals: by_name(s.refusals),
        delivered_total: s.delivered_total,
        inbox_stalls_total: s.inbox_stalls_total,
        io_backend: s.io_backend.into(),
        published_total: s.published_total,
        rejected_total: s.rejected_total,
        redis: s.redis.into(),
        redis_connects_total: s.redis_connects_total,
        stream_gaps_total: s.stream_gaps_total,
        replays_total: s.replays_total,
        replayed_total: s.replayed_total,
        history_gaps_total: s.history_gaps_total,
        history: Some(pb::HistoryStats {
            events: s.history.events,
            bytes: s.history.bytes,
            users: s.history.users,
        }),
        history_log_requests_total: s.history_log_requests_total,
        history_log_reads_total: s.history_log_reads_total,
        history_warm_reads_total: s.history_warm_reads_total,
        reactors: s.reactors.into_iter().map(|n| n as u64).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(app: &str, user: &str) -> Change {
        Change::Joined {
            app: app.into(),
            user: user.into(),
        }
    }

    #[test]
    fn a_tap_filters_by_app_and_ends_a_watcher_that_falls_behind() {
        let (tx, mut rx) = mpsc::channel(3);
        let mut tap = tap(tx, Some("shop".into()));
        assert!(tap(&joined("blog", "b1")), "another app: kept, not sent");
        assert!(tap(&joined("shop", "u1")));
        assert!(tap(&joined("shop", "u2")));
        assert!(!tap(&joined("shop", "u3")), "full: the tap is dropped");
        let got: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].as_ref().unwrap().user_id, "u1");
        assert_eq!(got[1].as_ref().unwrap().user_id, "u2");
        let end = got[2].as_ref().unwrap_err();
        assert_eq!(end.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            end.message(),
            "more than 2 presence changes unread: watch again"
        );
    }

    #[test]
    fn a_tap_whose_watcher_left_is_dropped() {
        let (tx, rx) = mpsc::channel(8);
        let mut tap = tap(tx, None);
        drop(rx);
        assert!(!tap(&joined("shop", "u1")));
        let (tx, rx) = mpsc::channel(8);
        let mut tap = super::tap(tx, Some("shop".into()));
        drop(rx);
        assert!(
            !tap(&joined("blog", "b1")),
            "gone: dropped at the next change"
        );
    }
}
