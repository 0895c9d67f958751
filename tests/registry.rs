//! The connection registry on the admin listener (SPEC §7, seed 001's JSON
//! shape): `GET /connections/{app}` and `/connections/{app}/{user}` list the
//! streaming connections of every reactor; `DELETE /connections/{id}` ends
//! that stream (204) or answers 404; `ADMIN_TOKEN` guards them.

mod common;

use common::{http_exchange, jwt, Herald, EVENT_TIMEOUT};
use serde_json::Value;

const TOKEN: &str = "registry-admin-token";

fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> common::HttpResponse {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n");
    http_exchange(addr, req.as_bytes(), EVENT_TIMEOUT).expect("request answered")
}

fn admin(h: &Herald, method: &str, path: &str, token: Option<&str>) -> common::HttpResponse {
    request(h.admin_addr(), method, path, token)
}

#[test]
fn listings_and_delete_across_reactors() {
    let h = Herald::start(&[
        ("JWT_SECRET", jwt::SECRET),
        ("ADMIN_TOKEN", TOKEN),
        ("WORKERS", "2"),
    ]);
    let mut u1: Vec<_> = (0..4)
        .map(|_| h.sse_with_token(&jwt::user_in("u1", "shop")))
        .collect();
    let mut u2 = h.sse_with_token(&jwt::user_in("u2", "shop"));
    let _other_app = h.sse_with_token(&jwt::user_in("u1", "blog"));
    let ids: Vec<String> = u1
        .iter()
        .map(|c| {
            c.header("x-connection-id")
                .expect("X-Connection-Id")
                .to_string()
        })
        .collect();
    let u2_id = u2.header("x-connection-id").unwrap().to_string();

    assert_eq!(admin(&h, "GET", "/connections/shop", None).status, 401);

    let all = admin(&h, "GET", "/connections/shop", Some(TOKEN));
    assert_eq!(all.status, 200);
    let all = all.body_json();
    let users = all.as_object().expect("user → connections");
    assert_eq!(users.len(), 2, "{all}");
    let listed: Vec<&String> = users["u1"].as_object().unwrap().keys().collect();
    assert_eq!(listed.len(), 4, "{all}");
    for id in &ids {
        let e = &users["u1"][id];
        assert_eq!(e["id"], Value::from(id.as_str()), "{all}");
        assert_eq!(e["application"]["id"], "shop");
        assert_eq!(e["user"]["id"], "u1");
        assert_eq!(e["remote_addr"], "127.0.0.1");
        let created = e["created_at"].as_u64().expect("created_at");
        assert!(
            created.abs_diff(common::unix_secs()) < 60,
            "created_at {created}"
        );
    }
    assert!(users["u2"].get(&u2_id).is_some(), "{all}");

    let one = admin(&h, "GET", "/connections/shop/u2", Some(TOKEN)).body_json();
    assert_eq!(one.as_object().unwrap().len(), 1, "{one}");
    assert_eq!(one[&u2_id]["user"]["id"], "u2");
    let none = admin(&h, "GET", "/connections/shop/nobody", Some(TOKEN)).body_json();
    assert_eq!(none, serde_json::json!({}));

    // DELETE ends exactly that stream, wherever it lives.
    assert_eq!(
        admin(&h, "DELETE", &format!("/connections/{}", ids[0]), None).status,
        401
    );
    let r = admin(
        &h,
        "DELETE",
        &format!("/connections/{}", ids[0]),
        Some(TOKEN),
    );
    assert_eq!(r.status, 204);
    assert!(
        u1[0].wait_closed(EVENT_TIMEOUT),
        "the deleted stream did not end"
    );
    let r = admin(
        &h,
        "DELETE",
        &format!("/connections/{}", ids[0]),
        Some(TOKEN),
    );
    assert_eq!(r.status, 404, "a second DELETE finds nothing");
    let r = admin(
        &h,
        "DELETE",
        "/connections/00000000-0000-4000-8000-000000000000",
        Some(TOKEN),
    );
    assert_eq!(r.status, 404, "an unknown id");
    let r = admin(&h, "DELETE", "/connections/not-an-id", Some(TOKEN));
    assert_eq!(r.status, 404);

    // The others still stream.
    h.publish_with_token(r#"{"app":"shop","message":"still here"}"#, Some(TOKEN));
    for c in u1.iter_mut().skip(1) {
        assert_eq!(c.expect_event().data, "still here");
    }
    assert_eq!(u2.expect_event().data, "still here");
    let after = admin(&h, "GET", "/connections/shop/u1", Some(TOKEN)).body_json();
    assert_eq!(after.as_object().unwrap().len(), 3, "{after}");
    assert!(after.get(&ids[0]).is_none());
}

fn public(h: &Herald, path: &str, token: Option<&str>) -> common::HttpResponse {
    request(h.addr(), "GET", path, token)
}

#[test]
fn public_listings_need_a_token_of_the_app() {
    let h = Herald::start(&[
        ("JWT_SECRET", jwt::SECRET),
        ("ALLOW_ANONYMOUS", "true"),
        ("WORKERS", "2"),
    ]);
    let a = h.sse_with_token(&jwt::user_in("u1", "shop"));
    let b = h.sse_with_token(&jwt::user_in("u2", "shop"));
    let _blog = h.sse_with_token(&jwt::user_in("u1", "blog"));
    let (a_id, b_id) = (
        a.header("x-connection-id").unwrap().to_string(),
        b.header("x-connection-id").unwrap().to_string(),
    );

    // No token: 401 even though anonymous listeners are allowed.
    common::assert_problem(
        &public(&h, "/connections/shop", None),
        401,
        "missing_token",
        "Unauthorized",
    );
    // A token of another app: 403.
    let blog = jwt::user_in("u9", "blog");
    common::assert_problem(
        &public(&h, "/connections/shop", Some(&blog)),
        403,
        "wrong_issuer",
        "Forbidden",
    );
    common::assert_problem(
        &public(&h, "/connections/shop", Some("not.a.jwt")),
        401,
        "invalid_jwt",
        "Unauthorized",
    );

    let shop = jwt::user_in("backend", "shop");
    let all = public(&h, "/connections/shop", Some(&shop));
    assert_eq!(all.status, 200, "{}", all.body_text());
    let all = all.body_json();
    assert_eq!(all.as_object().unwrap().len(), 2, "{all}");
    assert_eq!(all["u1"][&a_id]["application"]["id"], "shop", "{all}");
    assert_eq!(all["u2"][&b_id]["user"]["id"], "u2", "{all}");
    assert!(all["u1"].get(&b_id).is_none());

    let one = public(&h, &format!("/connections/shop/u2?token={shop}"), None).body_json();
    assert_eq!(one.as_object().unwrap().keys().collect::<Vec<_>>(), [&b_id]);
    assert_eq!(one[&b_id]["remote_addr"], "127.0.0.1");

    // DELETE is an admin operation only.
    let req = format!(
        "DELETE /connections/{a_id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {shop}\r\n\r\n"
    );
    let r = http_exchange(h.addr(), req.as_bytes(), EVENT_TIMEOUT).unwrap();
    assert_eq!(r.status, 405);
    // The listings left the streams alone.
    let left = public(&h, "/connections/shop", Some(&shop)).body_json();
    assert_eq!(left.as_object().unwrap().len(), 2, "{left}");
}
