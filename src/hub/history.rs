//! Replay history (SPEC §2): the last `HISTORY_SIZE` events per app, kept by
//! each reactor as `Arc` pointers (no sharing, no locks), and the replay
//! decision for a listener that reconnects with `Last-Event-ID`.
//!
//! Events without an `app` go to every app's listeners, so they live in a
//! ring of their own that is merged with the app's ring by ingest sequence.
//! Every reactor sees the same events in the same order, so replay gives the
//! same answer on whichever reactor a listener lands.
//!
//! A *gap marker* ([`gap_event`], recorded by [`super::Hub::gap`] when a
//! stream was trimmed past its reader) is kept in the ring like an event:
//! a replay that crosses it sends its `history-gap` frame in place (so the
//! listener learns that events were lost between the ones around it),
//! whatever the listener's filter. Markers are never matched as a
//! `Last-Event-ID`, and a replay that starts with a gap of its own (or from
//! `earliest`, or `HISTORY_ON_CONNECT`) drops the markers before its first
//! event; consecutive markers are sent once.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::filter::Filter;
use super::{Event, Target};

/// `Last-Event-ID` value asking for everything still in history, no gap.
pub const EARLIEST: &str = "earliest";

/// One reactor's history rings.
pub struct History {
    size: usize,
    /// Events without an `app`.
    global: Ring,
    /// Events of each app (found by `&str`, no allocation per event).
    apps: HashMap<Box<str>, Ring>,
}

#[derive(Default)]
struct Ring {
    events: VecDeque<Arc<Event>>,
    /// Ingest sequence of the newest event evicted from this ring (0: none).
    evicted_seq: u64,
}

/// Who is asking for replay: the listener's app, user and filter.
pub struct Subscriber<'a> {
    pub app: &'a str,
    pub user: Option<&'a str>,
    pub filter: Option<&'a Filter>,
}

impl Subscriber<'_> {
    /// Whether this listener would have received `ev` live.
    pub fn would_receive(&self, ev: &Event) -> bool {
        let app_ok = ev.app.as_deref().is_none_or(|a| a == self.app);
        let target_ok = match &ev.target {
            Target::All => true,
            Target::Users(ids) => self.user.is_some_and(|u| ids.iter().any(|id| &**id == u)),
            Target::Others(user) => self.user != Some(&**user),
        };
        // Internal events (gap markers, here) pass every filter, as live.
        app_ok
            && target_ok
            && (ev.internal
                || self
                    .filter
                    .is_none_or(|f| f.matches(ev.event_type(), ev.source.as_deref())))
    }
}

/// What a (re)connecting listener gets before going live.
#[derive(Debug, Default)]
pub struct Replay {
    /// The id was not found: send a `history-gap` event first.
    pub gap: bool,
    pub events: Vec<Arc<Event>>,
}

impl History {
    pub fn new(size: usize) -> Self {
        Self {
            size,
            global: Ring::default(),
            apps: HashMap::new(),
        }
    }

    /// Records an event (call in ingest order, before delivering it).
    pub fn push(&mut self, ev: &Arc<Event>) {
        if self.size == 0 {
            return;
        }
        let ring = match ev.app.as_deref() {
            None => &mut self.global,
            Some(app) => {
                if !self.apps.contains_key(app) {
                    self.apps.insert(app.into(), Ring::default());
                }
                self.apps.get_mut(app).expect("inserted above")
            }
        };
        if ring.events.len() == self.size {
            if let Some(old) = ring.events.pop_front() {
                ring.evicted_seq = old.seq;
            }
        }
        ring.events.push_back(ev.clone());
    }

    /// The events visible to `app`'s listeners, oldest first, and the
    /// sequence of the newest event either ring has already evicted.
    fn visible(&self, app: &str) -> (Vec<&Arc<Event>>, u64) {
        let global = Some(&self.global);
        let own = self.apps.get(app);
        let evicted = [global, own]
            .iter()
            .flatten()
            .map(|r| r.evicted_seq)
            .max()
            .unwrap_or(0);
        let mut a = global.into_iter().flat_map(|r| &r.events).peekable();
        let mut b = own.into_iter().flat_map(|r| &r.events).peekable();
        let mut out = Vec::new();
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => {
                    if x.seq < y.seq {
                        a.next()
                    } else {
                        b.next()
                    }
                }
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => break,
            };
            out.extend(next);
        }
        (out, evicted)
    }

    /// Replay for a listener that last saw `last_event_id`: the events after
    /// the most recent event with that id; or, when the id is unknown, a gap
    /// and everything still held; `earliest` gives everything, no gap.
    pub fn replay(&self, who: &Subscriber<'_>, last_event_id: &str) -> Replay {
        let (visible, evicted_seq) = self.visible(who.app);
        let (gap, start) = if last_event_id == EARLIEST {
            (false, 0)
        } else {
            let found = visible
                .iter()
                .rposition(|e| !is_gap_marker(e) && &*e.id == last_event_id);
            match found {
                // Held, but a later event was already evicted from one of the
                // two rings: what follows is incomplete, so say so.
                Some(i) => (evicted_seq > visible[i].seq, i + 1),
                None => (true, 0),
            }
        };
        let events = visible[start..]
            .iter()
            .filter(|e| who.would_receive(e))
            .map(|e| (*e).clone())
            .collect();
        // After an id that was found, a marker right behind it is news.
        let found = !gap && last_event_id != EARLIEST;
        Replay {
            gap,
            events: tidy_markers(events, found),
        }
    }

    /// The last `n` events this listener would have received (for
    /// `HISTORY_ON_CONNECT`). Walks the rings newest first and stops after
    /// `n` matches: nothing is copied for `n == 0`.
    pub fn recent(&self, who: &Subscriber<'_>, n: usize) -> Vec<Arc<Event>> {
        if n == 0 {
            return Vec::new();
        }
        let mut a = self.global.events.iter().rev().peekable();
        let mut b = self
            .apps
            .get(who.app)
            .into_iter()
            .flat_map(|r| r.events.iter().rev())
            .peekable();
        let newest_first = std::iter::from_fn(|| match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x.seq > y.seq => a.next(),
            (Some(_), Some(_)) | (None, Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, None) => None,
        });
        // `n` events, and the markers among them (not counted).
        let mut out: Vec<Arc<Event>> = Vec::new();
        let mut taken = 0;
        for e in newest_first.filter(|e| who.would_receive(e)) {
            if taken == n {
                break;
            }
            taken += usize::from(!is_gap_marker(e));
            out.push(e.clone());
        }
        out.reverse();
        tidy_markers(out, false)
    }
}

/// Drops consecutive gap markers but the first, and the markers before the
/// first event unless `keep_leading`.
fn tidy_markers(mut events: Vec<Arc<Event>>, keep_leading: bool) -> Vec<Arc<Event>> {
    if !events.iter().any(|e| is_gap_marker(e)) {
        return events;
    }
    let mut seen_event = keep_leading;
    let mut last_was_marker = false;
    events.retain(|e| {
        let marker = is_gap_marker(e);
        let keep = !marker || (seen_event && !last_was_marker);
        seen_event |= !marker;
        if keep {
            last_was_marker = marker;
        }
        keep
    });
    events
}

/// The name of the gap event.
pub const GAP_EVENT: &str = "history-gap";

/// The `history-gap` event for an id that is no longer (or never was) held.
pub fn gap_frame(last_event_id: &str) -> Vec<u8> {
    let data = serde_json::json!({ "lastEventId": last_event_id });
    super::sse::encode_event(None, Some(GAP_EVENT), super::sse::Payload::Json(&data))
}

/// A gap marker: events after `after_id` were lost before ingest read
/// them. Internal (no `id:` line, passes every filter, goes to every app's
/// listeners), with the `history-gap` frame for `after_id`.
pub fn gap_event(seq: u64, after_id: &str, published_ms: u64) -> Event {
    Event {
        seq,
        id: "".into(),
        app: None,
        target: Target::All,
        name: Some(GAP_EVENT.into()),
        source: None,
        frame: gap_frame(after_id).into(),
        published_ms,
        internal: true,
    }
}

/// Whether `ev` is a gap marker (presence events, the only other internal
/// events, are never kept in history).
pub fn is_gap_marker(ev: &Event) -> bool {
    ev.internal && ev.name.as_deref() == Some(GAP_EVENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::envelope::decode;

    fn ev(seq: u64, json: &str) -> Arc<Event> {
        let env = decode(json.as_bytes()).unwrap().remove(0);
        Arc::new(env.into_event(seq, format!("{seq}-0")))
    }

    fn ids(events: &[Arc<Event>]) -> Vec<String> {
        events.iter().map(|e| e.id.to_string()).collect()
    }

    fn subscriber<'a>(app: &'a str, user: Option<&'a str>) -> Subscriber<'a> {
        Subscriber {
            app,
            user,
            filter: None,
        }
    }

    #[test]
    fn replays_after_id_only_what_the_listener_would_get() {
        let mut h = History::new(10);
        h.push(&ev(1, r#"{"message":"all"}"#));
        h.push(&ev(2, r#"{"to":"u1","message":"u1 only"}"#));
        h.push(&ev(3, r#"{"to":"u2","message":"u2 only"}"#));
        h.push(&ev(4, r#"{"app":"shop","message":"shop"}"#));
        h.push(&ev(5, r#"{"app":"blog","message":"blog"}"#));
        h.push(&ev(6, r#"{"message":"all again"}"#));
        let r = h.replay(&subscriber("shop", Some("u1")), "1-0");
        assert!(!r.gap);
        assert_eq!(ids(&r.events), ["2-0", "4-0", "6-0"]);
        let r = h.replay(&subscriber("default", None), "1-0");
        assert_eq!(ids(&r.events), ["6-0"]);
        let r = h.replay(&subscriber("blog", Some("u2")), EARLIEST);
        assert!(!r.gap);
        assert_eq!(ids(&r.events), ["1-0", "3-0", "5-0", "6-0"]);
        let r = h.replay(&subscriber("shop", Some("u1")), "6-0");
        assert!(!r.gap && r.events.is_empty());
    }

    #[test]
    fn unknown_or_evicted_id_is_a_gap() {
        let mut h = History::new(2);
        for i in 1..=4 {
            h.push(&ev(i, r#"{"message":"m"}"#));
        }
        let r = h.replay(&subscriber("default", Some("u")), "1-0");
        assert!(r.gap);
        assert_eq!(ids(&r.events), ["3-0", "4-0"]);
        assert_eq!(
            gap_frame("1-0"),
            b"event: history-gap\ndata: {\"lastEventId\":\"1-0\"}\n\n"
        );
    }

    #[test]
    fn an_event_evicted_after_the_id_is_a_gap_not_a_silent_skip() {
        let mut h = History::new(3);
        h.push(&ev(1, r#"{"app":"default","message":"a1"}"#));
        for i in 2..=5 {
            h.push(&ev(i, r#"{"message":"g"}"#));
        }
        // 1-0 is still held in the app ring, but 2-0 was evicted from the
        // global ring.
        let r = h.replay(&subscriber("default", None), "1-0");
        assert!(r.gap);
        assert_eq!(ids(&r.events), ["3-0", "4-0", "5-0"]);
        // Resuming after 3-0 missed nothing: no gap.
        let r = h.replay(&subscriber("default", None), "3-0");
        assert!(!r.gap);
        assert_eq!(ids(&r.events), ["4-0", "5-0"]);
    }

    /// Ids, with gap markers shown as `GAP`.
    fn marked(events: &[Arc<Event>]) -> Vec<String> {
        let id = |e: &Arc<Event>| match is_gap_marker(e) {
            true => "GAP".to_string(),
            false => e.id.to_string(),
        };
        events.iter().map(id).collect()
    }

    #[test]
    fn a_gap_marker_is_replayed_in_place_whatever_the_filter() {
        let mut h = History::new(10);
        h.push(&Arc::new(gap_event(1, "0-1", 0)));
        h.push(&ev(2, r#"{"event":"a","message":"2"}"#));
        h.push(&Arc::new(gap_event(3, "2-0", 0)));
        h.push(&ev(4, r#"{"event":"b","message":"4"}"#));
        h.push(&Arc::new(gap_event(5, "4-0", 0)));
        h.push(&Arc::new(gap_event(6, "4-0", 0)));
        let all = subscriber("default", None);
        // After a held id: every marker after it, consecutive ones once.
        let r = h.replay(&all, "2-0");
        assert!(!r.gap);
        assert_eq!(marked(&r.events), ["GAP", "4-0", "GAP"]);
        assert_eq!(&*r.events[0].frame, &gap_frame("2-0")[..]);
        let r = h.replay(&all, "4-0");
        assert!(!r.gap);
        assert_eq!(marked(&r.events), ["GAP"]);
        // From earliest, or after a gap of its own: no leading marker.
        let r = h.replay(&all, EARLIEST);
        assert_eq!(marked(&r.events), ["2-0", "GAP", "4-0", "GAP"]);
        let r = h.replay(&all, "unknown");
        assert!(r.gap);
        assert_eq!(marked(&r.events), ["2-0", "GAP", "4-0", "GAP"]);
        // A marker's empty id is never a position.
        assert!(h.replay(&all, "").gap);
        // A filter that takes only `b` still hears of both gaps.
        let f = Filter::from_lists(Some("b"), None).unwrap().unwrap();
        let only_b = Subscriber {
            app: "shop",
            user: None,
            filter: Some(&f),
        };
        let r = h.replay(&only_b, "2-0");
        assert_eq!(marked(&r.events), ["GAP", "4-0", "GAP"]);
        // HISTORY_ON_CONNECT counts events, not markers, and drops a
        // leading one.
        assert_eq!(marked(&h.recent(&all, 1)), ["4-0", "GAP"]);
        assert_eq!(marked(&h.recent(&all, 5)), ["2-0", "GAP", "4-0", "GAP"]);
    }

    #[test]
    fn repeated_envelope_id_resumes_after_the_most_recent() {
        let mut h = History::new(10);
        h.push(&ev(1, r#"{"id":"x","message":"a"}"#));
        h.push(&ev(2, r#"{"message":"b"}"#));
        h.push(&ev(3, r#"{"id":"x","message":"c"}"#));
        h.push(&ev(4, r#"{"message":"d"}"#));
        let r = h.replay(&subscriber("default", None), "x");
        assert_eq!(ids(&r.events), ["4-0"]);
    }

    #[test]
    fn filters_apply_and_recent_takes_the_last_n() {
        let mut h = History::new(10);
        h.push(&ev(1, r#"{"event":"blog.post","message":"a"}"#));
        h.push(&ev(2, r#"{"event":"news","message":"b"}"#));
        h.push(&ev(3, r#"{"event":"blog.edit","message":"c"}"#));
        h.push(&ev(4, r#"{"event":"blog.del","message":"d"}"#));
        let f = Filter::from_lists(Some("blog.*"), None).unwrap().unwrap();
        let who = Subscriber {
            app: "default",
            user: None,
            filter: Some(&f),
        };
        assert_eq!(ids(&h.replay(&who, EARLIEST).events), ["1-0", "3-0", "4-0"]);
        assert_eq!(ids(&h.recent(&who, 2)), ["3-0", "4-0"]);
        assert!(History::new(0).replay(&who, "1-0").gap);
    }
}
