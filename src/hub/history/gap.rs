//! `history-gap`: the frame a listener gets when its position is no longer
//! held, and the *gap marker* ([`gap_event`], recorded by
//! [`crate::hub::Hub::gap`] when a stream was trimmed past its reader).
//!
//! A marker is kept in the history like an event: a replay that crosses it
//! sends its `history-gap` frame in place (so the listener learns that
//! events were lost between the ones around it), whatever the listener's
//! filter. Markers are never matched as a `Last-Event-ID` and never count
//! towards `HISTORY_SIZE`; a replay that starts with a gap of its own (or
//! from `earliest`, or `HISTORY_ON_CONNECT`) drops the markers before its
//! first event, and consecutive markers are sent once ([`tidy_markers`]).

use std::sync::Arc;

use crate::hub::{sse, Event, Target};

/// The name of the gap event.
pub const GAP_EVENT: &str = "history-gap";

/// The `history-gap` event for an id that is no longer (or never was) held.
pub fn gap_frame(last_event_id: &str) -> Vec<u8> {
    let data = serde_json::json!({ "lastEventId": last_event_id });
    sse::encode_event(None, Some(GAP_EVENT), sse::Payload::Json(&data))
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
        logged: false,
    }
}

/// Whether `ev` is a gap marker (presence events, the only other internal
/// events, are never kept in history).
pub fn is_gap_marker(ev: &Event) -> bool {
    ev.internal && ev.name.as_deref() == Some(GAP_EVENT)
}

/// Drops consecutive gap markers but the first, and the markers before the
/// first event unless `keep_leading`.
pub(super) fn tidy_markers(mut events: Vec<Arc<Event>>, keep_leading: bool) -> Vec<Arc<Event>> {
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
