//! Publish envelopes (SPEC §4): one JSON object, or an array of them as an
//! all-or-nothing batch.
//!
//! Both seed formats decode unchanged: `{"to","event","message"}` and
//! `{"id","type","source","timestamp","data"}`. Unknown fields are ignored.
//! Anything of the wrong type, a missing payload, or an id/name that would
//! break SSE framing is an [`EnvelopeError`] naming the envelope's index.

use std::fmt;

use serde_json::{Map, Value};

use super::sse::{encode_event, Payload as SsePayload};
use super::{Event, Target};

/// A decoded, validated envelope, not yet given an id or encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub target: Target,
    pub app: Option<String>,
    pub name: Option<String>,
    pub payload: Payload,
    pub id: Option<String>,
    pub source: Option<String>,
    /// Read from a log (a stream entry): its id is a log position.
    pub logged: bool,
    /// How long ago it was published (a log entry read after the fact),
    /// so that it ages out of history on time.
    pub age_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Message(String),
    Data(Value),
}

/// Why a publish body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeError {
    /// Index of the first bad envelope in a batch (0 for a single envelope);
    /// `None` when the body as a whole is not JSON.
    pub index: Option<usize>,
    pub reason: String,
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "envelope {i}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

/// Gives the envelopes of one log entry (a stream entry, a Kafka record)
/// their SSE ids from its position `pos`: `pos` itself for a single
/// envelope, `<pos>.<i>` for element `i` of a batch; `keep_own`: an
/// envelope's own `id` stays. Marks them as read from a log when `logged`.
pub fn positioned(envs: Vec<Envelope>, pos: &str, keep_own: bool, logged: bool) -> Vec<Envelope> {
    let single = envs.len() == 1;
    envs.into_iter()
        .enumerate()
        .map(|(i, mut env)| {
            env.logged = logged;
            if !(keep_own && env.id.is_some()) {
                env.id = Some(if single {
                    pos.to_string()
                } else {
                    format!("{pos}.{i}")
                });
            }
            env
        })
        .collect()
}

/// Decodes a publish body: an envelope or a non-empty array of envelopes.
pub fn decode(body: &[u8]) -> Result<Vec<Envelope>, EnvelopeError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| EnvelopeError {
        index: None,
        reason: format!("body is not valid JSON: {e}"),
    })?;
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(EnvelopeError {
                    index: None,
                    reason: "empty batch".into(),
                });
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    decode_one(v).map_err(|reason| EnvelopeError {
                        index: Some(i),
                        reason,
                    })
                })
                .collect()
        }
        v => decode_one(v)
            .map(|e| vec![e])
            .map_err(|reason| EnvelopeError {
                index: Some(0),
                reason,
            }),
    }
}

fn decode_one(value: Value) -> Result<Envelope, String> {
    let Value::Object(mut obj) = value else {
        return Err("an envelope must be a JSON object".into());
    };
    let target = match obj.remove("to") {
        None | Some(Value::Null) => Target::All,
        Some(Value::String(s)) if s == "*" => Target::All,
        Some(Value::String(s)) => Target::Users(vec![user_id(s)?].into()),
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err("`to` must not be an empty array (omit it to broadcast)".into());
            }
            let users = items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => user_id(s),
                    _ => Err("`to` must hold only strings".into()),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Target::Users(users.into())
        }
        Some(_) => return Err("`to` must be a string, an array of strings or null".into()),
    };
    let app = optional_string(&mut obj, "app")?;
    let name = match optional_string(&mut obj, "event")? {
        Some(n) => Some(n),
        None => optional_string(&mut obj, "type")?,
    };
    if let Some(n) = &name {
        check_single_line("event", n)?;
    }
    let id = optional_string(&mut obj, "id")?;
    if let Some(id) = &id {
        check_single_line("id", id)?;
    }
    let source = optional_string(&mut obj, "source")?;
    let payload = match optional_string(&mut obj, "message")? {
        Some(m) => Payload::Message(m),
        // `"data": null` is a JSON payload like any other (`data: null`).
        None => match obj.remove("data") {
            None => return Err("neither `message` nor `data` is present".into()),
            Some(v) => Payload::Data(v),
        },
    };
    Ok(Envelope {
        target,
        app,
        name,
        payload,
        id,
        source,
        logged: false,
        age_ms: 0,
    })
}

fn user_id(s: String) -> Result<Box<str>, String> {
    if s.is_empty() {
        Err("`to` must not contain an empty user id".into())
    } else {
        Ok(s.into())
    }
}

fn optional_string(obj: &mut Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("`{key}` must be a string")),
    }
}

fn check_single_line(field: &str, s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("`{field}` must not be empty"));
    }
    if s.contains(['\r', '\n', '\0']) {
        return Err(format!("`{field}` must not contain CR, LF or NUL"));
    }
    Ok(())
}

impl Envelope {
    /// Encodes the envelope into a shareable [`Event`]. `generated_id` is used
    /// when the envelope has no `id` of its own.
    pub fn into_event(self, seq: u64, generated_id: String) -> Event {
        let id = self.id.unwrap_or(generated_id);
        let payload = match &self.payload {
            Payload::Message(m) => SsePayload::Text(m),
            Payload::Data(v) => SsePayload::Json(v),
        };
        let frame = encode_event(Some(&id), self.name.as_deref(), payload);
        Event {
            seq,
            id: id.into(),
            app: self.app.map(Into::into),
            target: self.target,
            name: self.name.map(Into::into),
            source: self.source.map(Into::into),
            frame: frame.into(),
            published_ms: 0,
            internal: false,
            logged: self.logged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(json: &str) -> Envelope {
        let mut v = decode(json.as_bytes()).unwrap();
        assert_eq!(v.len(), 1);
        v.remove(0)
    }

    #[test]
    fn seed_000_format() {
        let e = one(r#"{"to":["663ae0a9","999ae0a9"],"event":"eventName","message":"any string"}"#);
        assert_eq!(
            e.target,
            Target::Users(vec!["663ae0a9".into(), "999ae0a9".into()].into())
        );
        assert_eq!(e.name.as_deref(), Some("eventName"));
        assert_eq!(e.payload, Payload::Message("any string".into()));
    }

    #[test]
    fn seed_003_format() {
        let e = one(
            r#"{"id":"evt-1","type":"blog.post.created","source":"cms","timestamp":"2024-01-01T00:00:00Z","data":{"title":"x"}}"#,
        );
        assert_eq!(e.target, Target::All);
        assert_eq!(e.id.as_deref(), Some("evt-1"));
        assert_eq!(e.name.as_deref(), Some("blog.post.created"));
        assert_eq!(e.source.as_deref(), Some("cms"));
        assert_eq!(e.payload, Payload::Data(serde_json::json!({"title":"x"})));
    }

    #[test]
    fn to_forms() {
        assert_eq!(
            one(r#"{"to":"u1","message":"m"}"#).target,
            Target::Users(vec!["u1".into()].into())
        );
        assert_eq!(one(r#"{"to":"*","message":"m"}"#).target, Target::All);
        assert_eq!(one(r#"{"to":null,"message":"m"}"#).target, Target::All);
        assert_eq!(
            one(r#"{"message":"m","app":"shop"}"#).app.as_deref(),
            Some("shop")
        );
    }

    #[test]
    fn message_wins_over_data() {
        assert_eq!(
            one(r#"{"message":"m","data":1}"#).payload,
            Payload::Message("m".into())
        );
        assert_eq!(
            one(r#"{"data":"hello"}"#).payload,
            Payload::Data(Value::String("hello".into()))
        );
    }

    #[test]
    fn rejections_name_the_envelope() {
        for (body, index, needle) in [
            ("not json", None, "not valid JSON"),
            ("[]", None, "empty batch"),
            ("42", Some(0), "object"),
            (r#"{"to":[]}"#, Some(0), "empty array"),
            (r#"{"to":[],"message":"m"}"#, Some(0), "empty array"),
            (r#"{"to":[1],"message":"m"}"#, Some(0), "only strings"),
            (r#"{"to":5,"message":"m"}"#, Some(0), "`to`"),
            (r#"{"event":"x"}"#, Some(0), "neither"),
            (r#"{"message":5}"#, Some(0), "`message`"),
            (r#"{"event":7,"message":"m"}"#, Some(0), "`event`"),
            (r#"{"event":"a\nb","message":"m"}"#, Some(0), "CR, LF"),
            (r#"{"id":"1\r","message":"m"}"#, Some(0), "CR, LF"),
            (r#"{"app":true,"message":"m"}"#, Some(0), "`app`"),
            (
                r#"[{"message":"ok"},{"message":"ok"},{"event":"x"}]"#,
                Some(2),
                "neither",
            ),
        ] {
            let e = decode(body.as_bytes()).unwrap_err();
            assert_eq!(e.index, index, "{body}");
            assert!(e.reason.contains(needle), "{body}: {}", e.reason);
        }
    }

    #[test]
    fn batch_in_order() {
        let v = decode(br#"[{"message":"a"},{"to":"u","data":[1]}]"#).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].payload, Payload::Message("a".into()));
    }

    #[test]
    fn a_number_in_data_reaches_the_frame_exactly() {
        // Found by fuzzing: without float_roundtrip the parser was one ulp
        // off, so the published number and the delivered one differed.
        let body = r#"{"type":"t","data":{"n":0.5e33,"m":1.7976931348623157e308}}"#;
        let ev = one(body).into_event(1, "1-0".into());
        let frame = std::str::from_utf8(&ev.frame).unwrap();
        let line = frame
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap();
        let sent: Value = serde_json::from_str(line).unwrap();
        let published: Value = serde_json::from_str(body).unwrap();
        assert_eq!(sent, published["data"]);
        assert_eq!(sent["n"].as_f64(), Some(5e32));
    }

    #[test]
    fn into_event_encodes_once_with_given_or_generated_id() {
        let ev = one(r#"{"event":"e","message":"a\nb"}"#).into_event(9, "5-0".into());
        assert_eq!(&*ev.id, "5-0");
        assert_eq!(&*ev.frame, b"id: 5-0\nevent: e\ndata: a\ndata: b\n\n");
        let ev = one(r#"{"id":"mine","data":{"k":1}}"#).into_event(10, "5-1".into());
        assert_eq!(&*ev.id, "mine");
        assert_eq!(&*ev.frame, b"id: mine\ndata: {\"k\":1}\n\n");
        assert_eq!(ev.event_type(), "message");
    }
}
