//! Hub unit tests: refused groups, the per-listener burst check, gaps.
use super::*;
use inbox::Msg;

fn hub(max_frame: usize) -> (Hub, crossbeam_channel::Receiver<Msg>) {
    let (tx, rx, _wake) = inbox::inbox().unwrap();
    (Hub::new(vec![tx], max_frame), rx)
}

fn group(json: &str) -> Vec<envelope::Envelope> {
    envelope::decode(json.as_bytes()).unwrap()
}

fn events(msg: Msg) -> Vec<String> {
    let batch = match msg {
        Msg::Events(b) => b,
        _ => panic!("not an events batch"),
    };
    batch.iter().map(|e| e.id.to_string()).collect()
}

#[test]
fn a_refused_group_leaves_the_others_in_one_batch() {
    let (hub, rx) = hub(200);
    let big = format!(r#"{{"id":"big","message":"{}"}}"#, "x".repeat(300));
    let batch = r#"[{"id":"b1","message":"1"},{"id":"b2","message":"y"}]"#;
    let groups = vec![
        group(r#"{"id":"g1","message":"1"}"#),
        group(&big),
        group(batch),
        group(&format!(r#"[{{"id":"h","message":"x"}},{big}]"#)),
        group(r#"{"id":"g2","message":"2"}"#),
    ];
    let (n, refused) = hub.publish_each(groups, Now::default());
    assert_eq!(n, 4);
    let why: Vec<_> = refused.iter().map(|r| (r.group, r.error.index)).collect();
    assert_eq!(why, [(1, Some(0)), (3, Some(1))]);
    assert_eq!(events(rx.try_recv().unwrap()), ["g1", "b1", "b2", "g2"]);
    assert!(rx.try_recv().is_err(), "one batch");
    // publish stays all or nothing, and passes its turn on.
    assert!(hub.publish(group(&big), Now::default()).is_err());
    assert_eq!(hub.publish(group(batch), Now::default()).unwrap(), 2);
    assert_eq!(events(rx.try_recv().unwrap()), ["b1", "b2"]);
}

#[test]
fn a_batch_one_listener_cannot_take_at_once_is_refused_whole() {
    let (hub, rx) = hub(300);
    let msg = "x".repeat(100);
    // Three broadcasts of ~120 bytes: every listener gets all of them.
    let bcast: Vec<String> = (0..3)
        .map(|i| format!(r#"{{"id":"a{i}","message":"{msg}"}}"#))
        .collect();
    let err = hub
        .publish(group(&format!("[{}]", bcast.join(","))), Now::default())
        .unwrap_err();
    assert_eq!(err.index, None);
    assert!(err.reason.contains("MAX_PENDING_BYTES"), "{}", err.reason);
    assert!(rx.try_recv().is_err(), "nothing of it was sent");
    // The same to three different users: ~120 bytes each at most.
    let targeted: Vec<String> = (0..3)
        .map(|i| format!(r#"{{"id":"t{i}","to":"u{i}","message":"{msg}"}}"#))
        .collect();
    assert_eq!(
        hub.publish(group(&format!("[{}]", targeted.join(","))), Now::default())
            .unwrap(),
        3
    );
    // Three to one user add up like broadcasts.
    let one: Vec<String> = (0..3)
        .map(|i| format!(r#"{{"id":"o{i}","to":"u1","message":"{msg}"}}"#))
        .collect();
    assert!(hub
        .publish(group(&format!("[{}]", one.join(","))), Now::default())
        .is_err());
}

#[test]
fn a_gap_goes_to_history_then_live() {
    let (hub, rx) = hub(usize::MAX);
    hub.gap("5-0", Now::default());
    let marker = match rx.try_recv().unwrap() {
        Msg::History(b) => b[0].clone(),
        _ => panic!("the history first"),
    };
    assert!(history::is_gap_marker(&marker));
    assert_eq!(&*marker.frame, &history::gap_frame("5-0")[..]);
    match rx.try_recv().unwrap() {
        Msg::Events(b) => assert!(Arc::ptr_eq(&b[0], &marker)),
        _ => panic!("then live"),
    }
}
