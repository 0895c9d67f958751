//! SSE wire encoding. Frames are built once per event, never per listener.

use std::fmt::Write as _;

/// The payload of an event: a string split into `data:` lines, or a JSON
/// value written compactly on one `data:` line.
pub enum Payload<'a> {
    Text(&'a str),
    Json(&'a serde_json::Value),
}

/// Encodes one SSE event: `id:`, `event:` (when named), `data:` lines and the
/// terminating blank line.
pub fn encode_event(id: Option<&str>, name: Option<&str>, payload: Payload<'_>) -> Vec<u8> {
    let mut out = String::with_capacity(64);
    if let Some(id) = id {
        let _ = writeln!(out, "id: {id}");
    }
    if let Some(name) = name {
        let _ = writeln!(out, "event: {name}");
    }
    match payload {
        Payload::Text(text) => {
            for line in split_lines(text) {
                let _ = writeln!(out, "data: {line}");
            }
        }
        Payload::Json(value) => {
            let _ = writeln!(out, "data: {value}");
        }
    }
    out.push('\n');
    out.into_bytes()
}

/// Splits on CRLF, CR and LF; an empty string is one empty line.
pub fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(s)
            }
            Some(i) => {
                let skip = if s[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&s[i + skip..]);
                Some(&s[..i])
            }
        }
    })
}

/// The stream preface: `retry:` and a blank line.
pub fn retry_preface(retry_ms: u64) -> String {
    format!("retry: {retry_ms}\n\n")
}

/// A heartbeat in event mode: `event: ping` with the unix time as data.
pub fn ping_event(unix_secs: u64) -> Vec<u8> {
    format!("event: ping\ndata: {unix_secs}\n\n").into_bytes()
}

/// A heartbeat in comment mode.
pub const PING_COMMENT: &[u8] = b": ping\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn text(id: Option<&str>, name: Option<&str>, msg: &str) -> String {
        String::from_utf8(encode_event(id, name, Payload::Text(msg))).unwrap()
    }

    #[test]
    fn named_event_with_id() {
        assert_eq!(
            text(Some("1-0"), Some("greet"), "hi"),
            "id: 1-0\nevent: greet\ndata: hi\n\n"
        );
    }

    #[test]
    fn unnamed_event_omits_event_line() {
        assert_eq!(text(Some("7"), None, "x"), "id: 7\ndata: x\n\n");
    }

    #[test]
    fn multiline_message_splits_on_cr_lf_crlf() {
        assert_eq!(
            text(None, None, "a\nb\r\nc\rd"),
            "data: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        assert_eq!(text(None, None, "a\n"), "data: a\ndata: \n\n");
        assert_eq!(text(None, None, ""), "data: \n\n");
        assert_eq!(text(None, None, "\r\n\r\n"), "data: \ndata: \ndata: \n\n");
    }

    #[test]
    fn json_is_compact_on_one_line() {
        let v: serde_json::Value =
            serde_json::from_str("{ \"a\" : [1, 2],\n \"b\": \"x\\ny\" }").unwrap();
        let s = String::from_utf8(encode_event(None, None, Payload::Json(&v))).unwrap();
        assert_eq!(s, "data: {\"a\":[1,2],\"b\":\"x\\ny\"}\n\n");
        let v = serde_json::Value::String("hello".into());
        let s = String::from_utf8(encode_event(None, None, Payload::Json(&v))).unwrap();
        assert_eq!(s, "data: \"hello\"\n\n");
    }

    #[test]
    fn heartbeats() {
        assert_eq!(ping_event(1700000000), b"event: ping\ndata: 1700000000\n\n");
        assert_eq!(retry_preface(3000), "retry: 3000\n\n");
    }
}
