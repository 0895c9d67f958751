//! Streams mode: telling entries removed before herald read them from
//! entries that never existed. Pure code over `XINFO STREAM` replies and
//! entry ids; the reader ([`super::stream`]) asks it after every `XREAD`,
//! with an `XINFO STREAM` pipelined right behind the read.
//!
//! Stream ids have gaps (`<ms>-<seq>`), so a jump between the last id read
//! and the next one proves nothing, and trimming does not move Redis's
//! `max-deleted-entry-id` (only `XDEL` does). What does prove a loss is a
//! count: Redis 7 reports `entries-added`, every entry ever added. Every
//! entry added after a point where herald had read everything was since
//! read, is still in the stream unread, or was removed unread (trimmed by
//! `MAXLEN`/`MINID`, or `XDEL`ed): lost. So [`Tally`] keeps `entries-added`
//! from the last time reading was caught up, and the entries read since:
//!
//! - **Caught up** (`last-generated-id` is the newest id read): nothing is
//!   unread, and the lost count is exact. This is the usual case.
//! - **Behind, and the oldest entry held is past the last id read**
//!   (trimming overtook the reader): every entry held is after that id, so
//!   the unread ones are counted from `length`; exact again, and reported
//!   at once.
//! - **Behind otherwise**: no trim reached unread entries; an `XDEL` of one
//!   is found once reading catches up.
//!
//! `entries-added` falling below what was read means the stream was deleted
//! and created again (or Redis restarted empty): counting starts over, and
//! nothing can be said about what the old stream held. Each loss is
//! reported once. Before Redis 7 there is no count, and nothing is found
//! (the reader says so once).

use std::fmt;

use redis::Value;

/// A stream entry id, `<ms>-<seq>`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct EntryId(pub u64, pub u64);

impl EntryId {
    /// Parses `<ms>-<seq>` (or a bare `<ms>`); `None` for anything else.
    pub fn parse(s: &str) -> Option<EntryId> {
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        Some(EntryId(ms.parse().ok()?, seq.parse().ok()?))
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// The fields of an `XINFO STREAM` reply that matter here.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Info {
    /// `length`: entries held.
    pub length: u64,
    /// `last-generated-id`: the newest id ever added.
    pub last_generated: Option<EntryId>,
    /// `entries-added` (Redis 7+): entries ever added.
    pub entries_added: Option<u64>,
    /// The id of `first-entry`, the oldest entry held (`None`: empty).
    pub first: Option<EntryId>,
}

impl Info {
    /// Reads an `XINFO STREAM` reply (RESP2 flat array or RESP3 map);
    /// missing or odd fields are left at their defaults.
    pub fn parse(reply: &Value) -> Info {
        let mut out = Info::default();
        let mut field = |name: &Value, value: &Value| match text(name).as_deref() {
            Some("length") => out.length = int(value).unwrap_or(0),
            Some("last-generated-id") => out.last_generated = id(value),
            Some("entries-added") => out.entries_added = int(value),
            Some("first-entry") => {
                out.first = match value {
                    Value::Array(entry) => entry.first().and_then(id),
                    _ => None,
                }
            }
            _ => {}
        };
        match reply {
            Value::Array(items) => items.chunks(2).for_each(|kv| {
                if let [k, v] = kv {
                    field(k, v)
                }
            }),
            Value::Map(pairs) => pairs.iter().for_each(|(k, v)| field(k, v)),
            _ => {}
        }
        out
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

fn id(v: &Value) -> Option<EntryId> {
    text(v).and_then(|s| EntryId::parse(&s))
}

/// Counts entries added against entries read (see the module docs).
#[derive(Debug, Default)]
pub struct Tally {
    /// `entries-added` when reading was last caught up; `None`: unknown.
    base: Option<u64>,
    /// Entries read since then.
    read: u64,
    /// Entries lost since then and already reported.
    reported: u64,
}

impl Tally {
    /// Starts at a caught-up point: the tail load, `info` from its
    /// `XINFO STREAM` (`None`: no stream yet, which counts from zero).
    pub fn start(info: Option<&Info>) -> Tally {
        Tally {
            base: info.map_or(Some(0), |i| i.entries_added),
            ..Tally::default()
        }
    }

    /// After an `XREAD` from `from` returned `read` (ids, in order), with
    /// the `XINFO STREAM` pipelined behind it (`None`: no such stream): how
    /// many entries were newly found removed unread (0: none).
    pub fn after_read(&mut self, from: EntryId, read: &[EntryId], info: Option<&Info>) -> u64 {
        self.read += read.len() as u64;
        let Some((info, added)) = info.and_then(|i| Some((i, i.entries_added?))) else {
            return 0;
        };
        let newest = read.last().copied().unwrap_or(from);
        let caught_up = info.last_generated.is_some_and(|g| g <= newest);
        let unread = match info.first {
            _ if caught_up => Some(0),
            None => Some(0),
            Some(first) if first > from => {
                let still_held = read.iter().filter(|&&r| r >= first).count() as u64;
                Some(info.length.saturating_sub(still_held))
            }
            Some(_) => None,
        };
        let mut found = 0;
        if let (Some(base), Some(unread)) = (self.base, unread) {
            match added.checked_sub(base + self.read + unread) {
                // The stream was created anew: start over.
                None => self.base = None,
                Some(lost) => {
                    found = lost.saturating_sub(self.reported);
                    self.reported = self.reported.max(lost);
                }
            }
        }
        if caught_up {
            *self = Tally {
                base: Some(added),
                ..Tally::default()
            };
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn id(ms: u64) -> EntryId {
        EntryId(ms, 0)
    }

    /// `XINFO STREAM` of a stream holding `held` (oldest first), `added`
    /// entries ever, the newest generated `last`.
    fn info(held: &[u64], added: Option<u64>, last: u64) -> Info {
        Info {
            length: held.len() as u64,
            last_generated: Some(id(last)),
            entries_added: added,
            first: held.first().map(|&ms| id(ms)),
        }
    }

    #[test]
    fn ids_order_as_redis_orders_them() {
        assert_eq!(EntryId::parse("5-3"), Some(EntryId(5, 3)));
        assert_eq!(EntryId::parse("7"), Some(EntryId(7, 0)));
        assert_eq!(EntryId::parse("x-1"), None);
        assert!(EntryId(10, 0) > EntryId(9, 99));
        assert!(EntryId(10, 2) > EntryId(10, 1));
        assert_eq!(EntryId(10, 2).to_string(), "10-2");
    }

    #[test]
    fn parses_resp2_and_resp3_replies() {
        let resp2 = Value::Array(vec![
            bulk("length"),
            Value::Int(2),
            bulk("last-generated-id"),
            bulk("9-1"),
            bulk("max-deleted-entry-id"),
            bulk("0-0"),
            bulk("entries-added"),
            Value::Int(7),
            bulk("first-entry"),
            Value::Array(vec![bulk("8-0"), Value::Array(vec![bulk("a"), bulk("1")])]),
        ]);
        let want = Info {
            length: 2,
            last_generated: Some(EntryId(9, 1)),
            entries_added: Some(7),
            first: Some(EntryId(8, 0)),
        };
        assert_eq!(Info::parse(&resp2), want);
        let resp3 = Value::Map(vec![
            (bulk("length"), Value::Int(0)),
            (bulk("first-entry"), Value::Nil),
        ]);
        assert_eq!(Info::parse(&resp3), Info::default());
        assert_eq!(Info::parse(&Value::Nil), Info::default());
    }

    #[test]
    fn caught_up_reads_count_exactly() {
        // 3 entries at start; then 1..=3 added and read one by one while
        // MAXLEN 2 trims what was read: no loss.
        let mut t = Tally::start(Some(&info(&[1, 2, 3], Some(3), 3)));
        for ms in 4..=6 {
            let got = t.after_read(
                id(ms - 1),
                &[id(ms)],
                Some(&info(&[ms - 1, ms], Some(ms), ms)),
            );
            assert_eq!(got, 0);
        }
        // 20 added at once under MAXLEN 5: the 5 held are read, 15 lost.
        let read: Vec<_> = (22..=26).map(id).collect();
        let i = info(&[22, 23, 24, 25, 26], Some(26), 26);
        assert_eq!(t.after_read(id(6), &read, Some(&i)), 15);
        // A timeout afterwards finds nothing new.
        assert_eq!(t.after_read(id(26), &[], Some(&i)), 0);
    }

    #[test]
    fn a_trim_that_overtakes_a_lagging_reader_is_found_at_once_and_once() {
        let mut t = Tally::start(Some(&info(&[], Some(0), 0)));
        // 10 added (1..=10); 2 read; then trimmed to the last 4 (7..=10):
        // 3..=6 lost, 7..=10 held unread.
        let i = info(&[7, 8, 9, 10], Some(10), 10);
        assert_eq!(t.after_read(id(0), &[id(1), id(2)], Some(&i)), 4);
        // Reading on finds nothing more, and being caught up rebases.
        let read: Vec<_> = (7..=10).map(id).collect();
        assert_eq!(t.after_read(id(2), &read, Some(&i)), 0);
        let i = info(&[10, 11], Some(11), 11);
        assert_eq!(t.after_read(id(10), &[id(11)], Some(&i)), 0);
    }

    #[test]
    fn a_lagging_reader_the_trim_did_not_reach_waits_for_the_count() {
        let mut t = Tally::start(Some(&info(&[1], Some(1), 1)));
        // 2..=9 added, entry 5 deleted unread; 2..=3 read, first held 1.
        let i = info(&[1, 2, 3, 4, 6, 7, 8, 9], Some(9), 9);
        assert_eq!(t.after_read(id(1), &[id(2), id(3)], Some(&i)), 0);
        let read = [id(4), id(6), id(7), id(8), id(9)];
        assert_eq!(t.after_read(id(3), &read, Some(&i)), 1);
    }

    #[test]
    fn a_stream_created_anew_starts_the_count_over() {
        let mut t = Tally::start(Some(&info(&[1, 2, 3], Some(3), 3)));
        // Redis restarted empty: no stream, then two new entries.
        assert_eq!(t.after_read(id(3), &[], None), 0);
        let i = info(&[10, 11], Some(2), 11);
        assert_eq!(t.after_read(id(3), &[id(10), id(11)], Some(&i)), 0);
        let i = info(&[10, 11, 12], Some(3), 12);
        assert_eq!(t.after_read(id(11), &[id(12)], Some(&i)), 0);
        // No stream at all at start counts from zero.
        let mut t = Tally::start(None);
        let i = info(&[5], Some(3), 5);
        assert_eq!(t.after_read(id(0), &[id(5)], Some(&i)), 2);
    }

    #[test]
    fn before_redis_7_nothing_is_found() {
        let mut t = Tally::start(Some(&info(&[1], None, 1)));
        let i = info(&[10], None, 10);
        assert_eq!(t.after_read(id(1), &[id(10)], Some(&i)), 0);
    }
}
