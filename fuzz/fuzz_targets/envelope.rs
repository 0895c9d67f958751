//! Fuzzes the publish-envelope decoder (`hub::envelope::decode`) and the SSE
//! frame each decoded envelope becomes (`Envelope::into_event`), checking that
//! no input can produce a frame that breaks SSE framing or alters the payload.
#![no_main]

use herald::hub::envelope::{decode, Envelope, Payload};
use herald::hub::Target;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let parsed: Option<Value> = serde_json::from_slice(data).ok();
    match decode(data) {
        Ok(envelopes) => {
            let expected = match &parsed {
                Some(Value::Array(items)) => items.len(),
                Some(_) => 1,
                None => panic!("decoded a body that is not JSON"),
            };
            assert_eq!(envelopes.len(), expected);
            for env in envelopes {
                check_envelope(env);
            }
        }
        Err(e) => {
            assert!(!e.reason.is_empty());
            match (&parsed, e.index) {
                (None, None) => {}
                (Some(Value::Array(items)), None) => assert!(items.is_empty()),
                (Some(Value::Array(items)), Some(i)) => assert!(i < items.len()),
                (Some(_), Some(i)) => assert_eq!(i, 0),
                (p, i) => panic!("error index {i:?} for {p:?}"),
            }
            assert!(!e.to_string().is_empty());
        }
    }
});

fn check_envelope(env: Envelope) {
    for field in [&env.id, &env.name].into_iter().flatten() {
        assert!(!field.is_empty() && !field.contains(['\r', '\n', '\0']));
    }
    if let Target::Users(users) = &env.target {
        assert!(!users.is_empty() && users.iter().all(|u| !u.is_empty()));
    }

    let want = env.clone();
    let ev = env.into_event(1, "1-0".into());
    let id = want.id.as_deref().unwrap_or("1-0");
    assert_eq!(ev.seq, 1);
    assert_eq!(&*ev.id, id);
    assert_eq!(ev.name.as_deref(), want.name.as_deref());
    assert_eq!(ev.app.as_deref(), want.app.as_deref());
    assert_eq!(ev.source.as_deref(), want.source.as_deref());
    assert_eq!(ev.target, want.target);
    assert_eq!(ev.event_type(), want.name.as_deref().unwrap_or("message"));

    let frame = std::str::from_utf8(&ev.frame).expect("frame is UTF-8");
    assert!(frame.ends_with("\n\n"), "frame must end with a blank line");
    assert!(!frame.contains('\r'), "no bare CR may reach the wire");
    // Exactly one blank line, at the end: nothing can split the event.
    assert_eq!(frame.find("\n\n"), Some(frame.len() - 2));

    let mut lines = frame[..frame.len() - 2].split('\n');
    assert_eq!(lines.next(), Some(format!("id: {id}").as_str()));
    let mut lines = lines.peekable();
    match &want.name {
        Some(name) => assert_eq!(lines.next(), Some(format!("event: {name}").as_str())),
        None => assert!(!lines.peek().is_some_and(|l| l.starts_with("event: "))),
    }
    let data: Vec<&str> = lines
        .map(|l| l.strip_prefix("data: ").expect("only data lines follow"))
        .collect();
    assert!(!data.is_empty());

    match &want.payload {
        Payload::Message(m) => {
            assert_eq!(data.join("\n"), m.replace("\r\n", "\n").replace('\r', "\n"));
        }
        Payload::Data(v) => {
            assert_eq!(data.len(), 1, "JSON must stay on one data line");
            let back: Value = serde_json::from_str(data[0]).expect("data line is JSON");
            assert_eq!(&back, v);
        }
    }
}
