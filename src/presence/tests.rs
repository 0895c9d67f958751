//! Presence counts, the local feed's marks and the cluster mirror.

use super::*;

#[test]
fn first_join_and_last_leave_only_and_the_per_user_limit() {
    let (tx, rx) = crossbeam_channel::unbounded();
    let p = Presence::new(2, Some(tx), true, Scope::Local, 10);
    p.join("shop", "u1").unwrap();
    p.join("shop", "u1").unwrap();
    assert_eq!(p.join("shop", "u1"), Err(UserFull));
    p.join("blog", "u1").unwrap(); // another app: counted apart
    p.leave("shop", "u1");
    p.leave("shop", "u1");
    p.leave("shop", "u1"); // one too many: ignored
    let got: Vec<Change> = rx.try_iter().collect();
    let (shop, blog, u1): (Box<str>, Box<str>, Box<str>) =
        ("shop".into(), "blog".into(), "u1".into());
    assert_eq!(
        got,
        vec![
            Change::Joined {
                app: shop.clone(),
                user: u1.clone()
            },
            Change::Joined {
                app: blog,
                user: u1.clone()
            },
            Change::Left {
                app: shop,
                user: u1
            },
        ]
    );
}

#[test]
fn on_connection_lists_own_user_first_and_truncates() {
    let p = Presence::new(0, None, true, Scope::Local, 2);
    for u in ["a", "b", "c", "me"] {
        p.join("shop", u).unwrap();
    }
    let v = p.on_connection("shop", Some("me"), 1 << 20);
    assert_eq!(v["users"][0], "me");
    assert_eq!(v["users"].as_array().unwrap().len(), 2);
    assert_eq!(v["truncated"], true);
    // Capped by bytes as well: only the own id fits in 10 bytes.
    let v = p.on_connection("shop", Some("me"), 10);
    assert_eq!(v, serde_json::json!({ "users": ["me"], "truncated": true }));
    let none = Presence::new(0, None, true, Scope::Local, 0);
    none.join("shop", "a").unwrap();
    let v = none.on_connection("shop", None, 1 << 20);
    assert_eq!(v, serde_json::json!({ "users": [], "truncated": true }));
    let v = p.on_connection("blog", None, 1 << 20);
    assert_eq!(v, serde_json::json!({ "users": [], "truncated": false }));
}

#[test]
fn the_cluster_scope_lists_the_mirror_and_has_no_local_feed() {
    let (tx, rx) = crossbeam_channel::unbounded();
    let p = Presence::new(1, Some(tx), true, Scope::Cluster, 10);
    assert!(p.events());
    p.join("shop", "local").unwrap(); // counted for the limit only
    assert_eq!(p.join("shop", "local"), Err(UserFull));
    assert!(
        rx.try_recv().is_err(),
        "the cluster announces, not this node"
    );
    let joined = |u: &str| Change::Joined {
        app: "shop".into(),
        user: u.into(),
    };
    assert!(p.mirror(&joined("far")));
    assert!(!p.mirror(&joined("far")), "a repeat changes nothing");
    let v = p.on_connection("shop", Some("me"), 1 << 20);
    assert_eq!(
        v,
        serde_json::json!({"users": ["me", "far"], "truncated": false})
    );
    assert!(p.mirror(&Change::Left {
        app: "shop".into(),
        user: "far".into(),
    }));
    let v = p.on_connection("shop", None, 1 << 20);
    assert_eq!(v, serde_json::json!({"users": [], "truncated": false}));
    p.mirror_reset([("shop".into(), "x".into()), ("blog".into(), "y".into())]);
    let v = p.on_connection("blog", None, 1 << 20);
    assert_eq!(v, serde_json::json!({"users": ["y"], "truncated": false}));
    // The local scope has no mirror.
    let local = Presence::new(0, None, true, Scope::Local, 10);
    assert!(!local.mirror(&joined("far")));
    assert_eq!(
        local.on_connection("shop", None, 1 << 20)["users"],
        serde_json::json!([])
    );
}
