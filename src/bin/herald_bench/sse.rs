//! An incremental `text/event-stream` parser that follows the WHATWG HTML
//! "event stream interpretation" rules, fed with whatever bytes a `read`
//! returned.
//!
//! - Lines end in CRLF, LF or CR; a CRLF split across two reads is one line
//!   end, not two.
//! - A leading U+FEFF BOM is skipped; lines starting with `:` are comments.
//! - `field: value` drops one space after the colon; a line without a colon is
//!   a field with an empty value; unknown fields are ignored.
//! - `data` lines are joined with LF; an event with no data is not dispatched
//!   (but still sets the last event id); `event` defaults to `message`.
//! - `id` containing NUL is ignored. `retry` (digits only) is kept in
//!   [`Parser::retry_ms`]: a storm reconnects at once (the worst case), but
//!   `--follow` waits for it as an `EventSource` does.
//! - An event cut off by the end of a stream is discarded ([`Parser::restart`]).
//!
//! On reconnect the last event id carries over, as browsers do it (Chromium
//! seeds the new stream's id buffer with it), so `Last-Event-ID` stays right
//! even if the new stream drops before its first event.
//!
//! Memory: a parser holds only what an unfinished line or event needs; an idle
//! connection's buffers are empty.

use std::borrow::Cow;

/// One dispatched event; [`Parser::last_event_id`] is its id.
#[derive(Debug)]
pub struct Event<'a> {
    pub event_type: &'a str,
    pub data: &'a str,
}

#[derive(Default)]
pub struct Parser {
    /// An unfinished line carried over from the previous `feed`.
    line: Vec<u8>,
    /// The previous `feed` ended on CR: a leading LF now is its CRLF tail.
    after_cr: bool,
    /// Nothing of this stream was seen yet (a BOM may come).
    started: bool,
    data: Vec<u8>,
    event_type: Vec<u8>,
    id_buffer: Vec<u8>,
    last_id: String,
    comments: u64,
    retry_ms: Option<u64>,
}

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    /// The last event id, as an `EventSource` would send it in
    /// `Last-Event-ID` when it reconnects (empty: none).
    pub fn last_event_id(&self) -> &str {
        &self.last_id
    }

    /// The last valid `retry:` value (ms), kept across reconnects.
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    /// Comment lines seen (heartbeats in comment mode, padding).
    pub fn comments(&self) -> u64 {
        self.comments
    }

    /// Starts a new stream after a reconnect: any unfinished line or event of
    /// the old one is discarded; the last event id and retry are kept.
    pub fn restart(&mut self) {
        self.line = Vec::new();
        self.data = Vec::new();
        self.event_type = Vec::new();
        self.after_cr = false;
        self.started = false;
        self.id_buffer.clear();
        self.id_buffer.extend_from_slice(self.last_id.as_bytes());
    }

    /// Parses `input`, calling `on_event` for every event it completes.
    pub fn feed(&mut self, mut input: &[u8], mut on_event: impl FnMut(&Event<'_>)) {
        if self.after_cr && !input.is_empty() {
            self.after_cr = false;
            if input[0] == b'\n' {
                input = &input[1..];
            }
        }
        if !self.started && !input.is_empty() {
            // The BOM is three bytes and may itself arrive split.
            let bom = "\u{feff}".as_bytes();
            let have = self.line.len();
            let take = (bom.len() - have).min(input.len());
            let mut probe = self.line.clone();
            probe.extend_from_slice(&input[..take]);
            if bom.starts_with(&probe) {
                if probe.len() < bom.len() {
                    self.line = probe;
                    return;
                }
                self.line.clear();
                input = &input[take..];
            }
            self.started = true;
        }
        while let Some(end) = input.iter().position(|&b| b == b'\n' || b == b'\r') {
            let cr = input[end] == b'\r';
            if self.line.is_empty() {
                self.process_line(&input[..end], &mut on_event);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&input[..end]);
                self.process_line(&line, &mut on_event);
                line.clear();
                self.line = line;
            }
            input = &input[end + 1..];
            if cr {
                match input.first() {
                    Some(b'\n') => input = &input[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        self.line.extend_from_slice(input);
    }

    fn process_line(&mut self, line: &[u8], on_event: &mut impl FnMut(&Event<'_>)) {
        if line.is_empty() {
            return self.dispatch(on_event);
        }
        if line[0] == b':' {
            self.comments += 1;
            return;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match name {
            b"event" => {
                self.event_type.clear();
                self.event_type.extend_from_slice(value);
            }
            b"data" => {
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
            }
            b"id" if !value.contains(&0) => {
                self.id_buffer.clear();
                self.id_buffer.extend_from_slice(value);
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.retry_ms = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            }
            _ => {} // unknown fields
        }
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(&Event<'_>)) {
        if self.last_id.as_bytes() != self.id_buffer.as_slice() {
            self.last_id = String::from_utf8_lossy(&self.id_buffer).into_owned();
        }
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        self.data.pop(); // the LF after the last data line
        let data: Cow<'_, str> = String::from_utf8_lossy(&self.data);
        let event_type: Cow<'_, str> = if self.event_type.is_empty() {
            Cow::Borrowed("message")
        } else {
            String::from_utf8_lossy(&self.event_type)
        };
        on_event(&Event {
            event_type: &event_type,
            data: &data,
        });
        self.data.clear();
        self.event_type.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (last event id, type, data) of every event `chunks` produce, fed in
    /// order; the id is read after the chunk that completed the event.
    fn parse(chunks: &[&[u8]]) -> Vec<(String, String, String)> {
        let mut p = Parser::new();
        let mut out = Vec::new();
        for c in chunks {
            let mut got = Vec::new();
            p.feed(c, |e| {
                got.push((e.event_type.to_string(), e.data.to_string()))
            });
            out.extend(
                got.into_iter()
                    .map(|(t, d)| (p.last_event_id().to_string(), t, d)),
            );
        }
        out
    }

    fn ev(id: &str, ty: &str, data: &str) -> (String, String, String) {
        (id.into(), ty.into(), data.into())
    }

    #[test]
    fn line_endings_lf_cr_crlf_are_equivalent() {
        for sep in ["\n", "\r", "\r\n"] {
            let first = format!("id: 1{sep}event: greet{sep}data: a{sep}data: b{sep}{sep}");
            let second = format!("id: 2{sep}data: c{sep}{sep}");
            let got = parse(&[first.as_bytes(), second.as_bytes()]);
            assert_eq!(
                got,
                vec![ev("1", "greet", "a\nb"), ev("2", "message", "c")],
                "separator {sep:?}"
            );
        }
    }

    #[test]
    fn crlf_split_across_reads_is_one_line_end() {
        // "data: x\r" | "\n\r" | "\n": two line ends, so one event, not two blank lines.
        let got = parse(&[b"data: x\r", b"\n\r", b"\n"]);
        assert_eq!(got, vec![ev("", "message", "x")]);
        // A lone CR at the end of a read followed by a non-LF byte.
        let got = parse(&[b"data: y\r", b"\r"]);
        assert_eq!(got, vec![ev("", "message", "y")]);
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let text = "\u{feff}retry: 250\r\n: hi\r\nid: 7-1\r\nevent: e\r\ndata: {\"t\":1}\r\n\r\n\
                    data:no-space\rdata:  two spaces\r\r:c\nid\ndata\n\n";
        let mut whole = Parser::new();
        let mut a = Vec::new();
        whole.feed(text.as_bytes(), |e| {
            a.push((e.event_type.to_string(), e.data.to_string()))
        });
        let mut split = Parser::new();
        let mut b = Vec::new();
        for byte in text.as_bytes().chunks(1) {
            split.feed(byte, |e| {
                b.push((e.event_type.to_string(), e.data.to_string()))
            });
        }
        assert_eq!(a, b);
        let pair = |t: &str, d: &str| (t.to_string(), d.to_string());
        assert_eq!(
            a,
            vec![
                pair("e", "{\"t\":1}"),
                pair("message", "no-space\n two spaces"),
                pair("message", ""),
            ]
        );
        assert_eq!(whole.last_event_id(), "", "a bare `id` line empties the id");
        assert_eq!(split.comments(), 2);
    }

    #[test]
    fn comments_retry_and_unknown_fields_do_not_dispatch() {
        let mut p = Parser::new();
        let mut n = 0;
        p.feed(
            b": ping\n:\nretry: 3000\nretry: 12x\nfoo: bar\n\ndata: d\n\n",
            |_| n += 1,
        );
        assert_eq!(n, 1);
        assert_eq!(p.comments(), 2);
        // The valid retry is kept (the bad one ignored), across a restart.
        assert_eq!(p.retry_ms(), Some(3000));
        p.restart();
        p.feed(
            b"retry: 250

",
            |_| {},
        );
        assert_eq!(p.retry_ms(), Some(250));
    }

    #[test]
    fn event_without_data_is_not_dispatched_but_sets_the_id() {
        let got = parse(&[b"id: 5\nevent: x\n\n", b"data: after\n\n"]);
        assert_eq!(got, vec![ev("5", "message", "after")]);
    }

    #[test]
    fn id_with_nul_is_ignored_and_id_persists() {
        let got = parse(&[
            b"id: 1\ndata: a\n\n",
            b"id: x\0y\ndata: b\n\n",
            b"data: c\n\n",
        ]);
        assert_eq!(
            got,
            vec![
                ev("1", "message", "a"),
                ev("1", "message", "b"),
                ev("1", "message", "c")
            ]
        );
    }

    #[test]
    fn bom_only_at_stream_start_and_split() {
        let bom = "\u{feff}".as_bytes();
        let got = parse(&[&bom[..1], &bom[1..], b"data: a\n\n"]);
        assert_eq!(got, vec![ev("", "message", "a")]);
        // A BOM later in the stream is part of a field name: an ignored line.
        let text = "data: a\n\n\u{feff}data: b\n\n";
        assert_eq!(parse(&[text.as_bytes()]), vec![ev("", "message", "a")]);
    }

    #[test]
    fn restart_drops_the_unfinished_event_and_keeps_the_id() {
        let mut p = Parser::new();
        let mut got = Vec::new();
        p.feed(b"id: 9\ndata: done\n\nid: 10\ndata: cut", |e| {
            got.push(e.data.to_string())
        });
        p.restart();
        assert_eq!(p.last_event_id(), "9");
        // The new stream's preface (retry + blank line) must not clear the id.
        p.feed(b"retry: 3000\n\ndata: fresh\n\n", |e| {
            got.push(e.data.to_string())
        });
        assert_eq!(got, vec!["done".to_string(), "fresh".to_string()]);
        assert_eq!(p.last_event_id(), "9");
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let got = parse(&[b"data: \xff\xfe ok\n\n"]);
        assert_eq!(got, vec![ev("", "message", "\u{fffd}\u{fffd} ok")]);
    }
}
