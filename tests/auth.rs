//! Who a listener is (SPEC §2): token sources and their precedence, HMAC and
//! public-key algorithms with keys made in the test, `iss` as application,
//! `aud`, `nbf`, `exp` and leeway, `sub`/`userId`, anonymous listeners;
//! claims of the wrong type and `crit` refused by name; streams ending when
//! their token expires (`CLOSE_ON_TOKEN_EXPIRY`).
//!
//! Identity is checked end to end: a stream is accepted, and a targeted
//! event for the expected user id reaches it.

mod common;

use std::time::Duration;

use common::jwt::{self, KeyKind, KeyPair};
use common::{assert_problem, http_exchange, Herald, SseClient, TempDir, EVENT_TIMEOUT};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

fn herald() -> Herald {
    Herald::start(&[("JWT_SECRET", jwt::SECRET)])
}

/// Asserts `c` is the stream of user `user`: a targeted event reaches it.
fn assert_is_user(h: &Herald, c: &mut SseClient, user: &str) {
    let marker = format!("for {user} {}", common::unix_ms());
    h.publish_json(&json!({"to": user, "event": "whoami", "message": marker}));
    let ev = c.expect_non_ping();
    assert_eq!(ev.data, marker, "stream is not user {user}: {ev:?}");
}

fn refused(h: &Herald, path: &str, headers: &[(&str, &str)]) -> common::HttpResponse {
    let c = h.connect(path, headers);
    assert_ne!(c.status(), 200, "GET {path} {headers:?} was accepted");
    c.response().clone()
}

#[test]
fn bearer_header() {
    let h = herald();
    let auth = format!("Bearer {}", jwt::user("bearer-user"));
    let mut c = h.sse("/sse", &[("Authorization", &auth)]);
    assert_is_user(&h, &mut c, "bearer-user");
    // The scheme is case-insensitive.
    let auth = format!("bearer {}", jwt::user("lower-bearer"));
    let mut c = h.sse("/sse", &[("Authorization", &auth)]);
    assert_is_user(&h, &mut c, "lower-bearer");
}

#[test]
fn token_query_parameter() {
    let h = herald();
    let mut c = h.sse(&format!("/sse?token={}", jwt::user("query-user")), &[]);
    assert_is_user(&h, &mut c, "query-user");
    // Among other parameters, and percent-encoded (a JWT's dots as %2E).
    let t = jwt::user("query-user-2").replace('.', "%2E");
    let mut c = h.sse(&format!("/events?event_types=whoami&token={t}&x=1"), &[]);
    assert_is_user(&h, &mut c, "query-user-2");
}

#[test]
fn default_cookie() {
    let h = herald();
    let cookie = format!("other=1; herald_token={}; more=2", jwt::user("cookie-user"));
    let mut c = h.sse("/sse", &[("Cookie", &cookie)]);
    assert_is_user(&h, &mut c, "cookie-user");
}

#[test]
fn custom_cookie_name() {
    let h = Herald::start(&[("JWT_SECRET", jwt::SECRET), ("JWT_COOKIE", "sess")]);
    let cookie = format!("sess={}", jwt::user("custom-cookie-user"));
    let mut c = h.sse("/sse", &[("Cookie", &cookie)]);
    assert_is_user(&h, &mut c, "custom-cookie-user");
    // The default name is no longer read.
    let cookie = format!("herald_token={}", jwt::user("x"));
    let r = refused(&h, "/sse", &[("Cookie", &cookie)]);
    assert_problem(&r, 401, "missing_token", "Unauthorized");
}

#[test]
fn first_present_source_wins() {
    let h = herald();
    let good_bearer = format!("Bearer {}", jwt::user("from-bearer"));
    let bad = jwt::hs256("wrong-secret", &json!({"sub": "x", "exp": jwt::now() + 60}));
    // Bearer beats a bad query token and a bad cookie.
    let mut c = h.sse(
        &format!("/sse?token={bad}"),
        &[
            ("Authorization", &good_bearer),
            ("Cookie", &format!("herald_token={bad}")),
        ],
    );
    assert_is_user(&h, &mut c, "from-bearer");
    // A bad bearer is not rescued by a good query token.
    let r = refused(
        &h,
        &format!("/sse?token={}", jwt::user("q")),
        &[("Authorization", &format!("Bearer {bad}"))],
    );
    assert_problem(&r, 401, "invalid_jwt", "Unauthorized");
    // Query beats cookie.
    let mut c = h.sse(
        &format!("/sse?token={}", jwt::user("from-query")),
        &[("Cookie", &format!("herald_token={bad}"))],
    );
    assert_is_user(&h, &mut c, "from-query");
    let r = refused(
        &h,
        &format!("/sse?token={bad}"),
        &[("Cookie", &format!("herald_token={}", jwt::user("c")))],
    );
    assert_problem(&r, 401, "invalid_jwt", "Unauthorized");
}

#[test]
fn hmac_family_is_accepted() {
    let h = herald();
    for (alg, user) in [
        (Algorithm::HS256, "hs256"),
        (Algorithm::HS384, "hs384"),
        (Algorithm::HS512, "hs512"),
    ] {
        let t = jwt::hmac(
            alg,
            jwt::SECRET,
            &json!({"sub": user, "exp": jwt::now() + 600}),
        );
        let mut c = h.sse_with_token(&t);
        assert_is_user(&h, &mut c, user);
    }
}

/// Starts herald with `key`'s public half in a file, checks a token of each
/// algorithm in `algs` is accepted, and that the key's own tokens signed by
/// another key of the same kind are refused.
fn check_public_key(kind: KeyKind, algs: &[Algorithm]) {
    let key = KeyPair::shared(kind);
    let dir = TempDir::new("pubkey");
    let path = key.write_public(dir.path(), "public.pem");
    let h = Herald::start(&[("JWT_PUBLIC_KEY_FILE", path.to_str().unwrap())]);
    for alg in algs {
        let user = format!("{alg:?}-user");
        let t = key.sign_with(*alg, &json!({"sub": user, "exp": jwt::now() + 600}));
        let mut c = h.sse_with_token(&t);
        assert_is_user(&h, &mut c, &user);
    }
    // Same kind, different key: bad signature.
    let other = KeyPair::generate(kind);
    let t = other.sign(&json!({"sub": "intruder", "exp": jwt::now() + 600}));
    let r = refused(&h, &format!("/sse?token={t}"), &[]);
    assert_problem(&r, 401, "invalid_jwt", "Unauthorized");
    // HMAC tokens are refused when only a public key is configured.
    let t = jwt::user("hmac-user");
    let r = refused(&h, &format!("/sse?token={t}"), &[]);
    assert_problem(&r, 401, "invalid_jwt", "Unauthorized");
}

#[test]
fn rsa_rs256_and_ps256() {
    check_public_key(
        KeyKind::Rsa,
        &[Algorithm::RS256, Algorithm::RS512, Algorithm::PS256],
    );
}

#[test]
fn ec_p256_es256() {
    check_public_key(KeyKind::EcP256, &[Algorithm::ES256]);
}

#[test]
fn ec_p384_es384() {
    check_public_key(KeyKind::EcP384, &[Algorithm::ES384]);
}

#[test]
fn ed25519_eddsa() {
    check_public_key(KeyKind::Ed25519, &[Algorithm::EdDSA]);
}

#[test]
fn inline_public_key_and_other_family_refused() {
    let ec = KeyPair::shared(KeyKind::EcP256);
    let h = Herald::start(&[("JWT_PUBLIC_KEY", &ec.public_pem)]);
    let t = ec.sign(&json!({"sub": "inline-ec", "exp": jwt::now() + 600}));
    let mut c = h.sse_with_token(&t);
    assert_is_user(&h, &mut c, "inline-ec");
    // An RSA or Ed25519 token against an EC key: wrong family.
    for kind in [KeyKind::Rsa, KeyKind::Ed25519] {
        let t = KeyPair::shared(kind).sign(&json!({"sub": "x", "exp": jwt::now() + 600}));
        let r = refused(&h, &format!("/sse?token={t}"), &[]);
        assert_problem(&r, 401, "invalid_jwt", "Unauthorized");
    }
}

#[test]
fn inline_public_key_with_escaped_newlines() {
    // Env files often carry a PEM on one line with literal `\n`.
    let ed = KeyPair::shared(KeyKind::Ed25519);
    let one_line = ed.public_pem.trim_end().replace('\n', "\\n");
    let h = Herald::start(&[("JWT_PUBLIC_KEY", &one_line)]);
    let t = ed.sign(&json!({"sub": "one-line", "exp": jwt::now() + 600}));
    let mut c = h.sse_with_token(&t);
    assert_is_user(&h, &mut c, "one-line");
}

#[test]
fn secret_and_public_key_together() {
    let rsa = KeyPair::shared(KeyKind::Rsa);
    let h = Herald::start(&[
        ("JWT_SECRET", jwt::SECRET),
        ("JWT_PUBLIC_KEY", &rsa.public_pem),
    ]);
    let mut a = h.sse_with_token(&jwt::user("via-hmac"));
    assert_is_user(&h, &mut a, "via-hmac");
    let t = rsa.sign(&json!({"sub": "via-rsa", "exp": jwt::now() + 600}));
    let mut b = h.sse_with_token(&t);
    assert_is_user(&h, &mut b, "via-rsa");
    // An HMAC token made with the public key as secret still fails.
    let forged = jwt::hs256(
        &rsa.public_pem,
        &json!({"sub": "x", "exp": jwt::now() + 600}),
    );
    let r = refused(&h, &format!("/sse?token={forged}"), &[]);
    assert_problem(&r, 401, "invalid_jwt", "Unauthorized");
}

#[test]
fn issuer_list() {
    let h = Herald::start(&[("JWT_SECRET", jwt::SECRET), ("JWT_ISSUER", "shop, blog")]);
    let mut shop = h.sse_with_token(&jwt::user_in("u-shop", "shop"));
    assert_is_user(&h, &mut shop, "u-shop");
    let mut blog = h.sse_with_token(&jwt::user_in("u-blog", "blog"));
    assert_is_user(&h, &mut blog, "u-blog");
    for token in [
        jwt::user_in("u", "evil"),
        jwt::user_in("u", "shopx"),
        jwt::user("u"),
    ] {
        let r = refused(&h, &format!("/sse?token={token}"), &[]);
        assert_problem(&r, 403, "wrong_issuer", "Forbidden");
    }
    // `default` in the list admits tokens without `iss`.
    let h = Herald::start(&[("JWT_SECRET", jwt::SECRET), ("JWT_ISSUER", "default,shop")]);
    let mut c = h.sse_with_token(&jwt::user("no-iss"));
    assert_is_user(&h, &mut c, "no-iss");
}

#[test]
fn token_without_iss_is_app_default() {
    let h = herald();
    let mut no_iss = h.sse_with_token(&jwt::user("same"));
    let mut shop = h.sse_with_token(&jwt::user_in("same", "shop"));
    h.publish_ok(r#"{"app":"default","message":"for default"}"#);
    h.publish_ok(r#"{"app":"shop","message":"for shop"}"#);
    h.publish_ok(r#"{"message":"marker"}"#);
    assert_eq!(no_iss.expect_event().data, "for default");
    assert_eq!(no_iss.expect_event().data, "marker");
    assert_eq!(shop.expect_event().data, "for shop");
    assert_eq!(shop.expect_event().data, "marker");
}

#[test]
fn audience() {
    let h = Herald::start(&[("JWT_SECRET", jwt::SECRET), ("JWT_AUDIENCE", "web,mobile")]);
    let exp = jwt::now() + 600;
    let ok = [
        jwt::hs256(
            jwt::SECRET,
            &json!({"sub": "aud1", "aud": "web", "exp": exp}),
        ),
        jwt::hs256(
            jwt::SECRET,
            &json!({"sub": "aud2", "aud": ["other", "mobile"], "exp": exp}),
        ),
    ];
    for (t, user) in ok.iter().zip(["aud1", "aud2"]) {
        let mut c = h.sse_with_token(t);
        assert_is_user(&h, &mut c, user);
    }
    for t in [
        jwt::hs256(
            jwt::SECRET,
            &json!({"sub": "x", "aud": "desktop", "exp": exp}),
        ),
        jwt::hs256(jwt::SECRET, &json!({"sub": "x", "exp": exp})),
    ] {
        let r = refused(&h, &format!("/sse?token={t}"), &[]);
        assert_problem(&r, 401, "invalid_jwt", "Unauthorized");
    }
    // Without JWT_AUDIENCE, `aud` is not checked.
    let h = herald();
    let t = jwt::hs256(
        jwt::SECRET,
        &json!({"sub": "any-aud", "aud": "whatever", "exp": exp}),
    );
    let mut c = h.sse_with_token(&t);
    assert_is_user(&h, &mut c, "any-aud");
}

#[test]
fn not_before() {
    let h = herald();
    let now = jwt::now();
    let future = jwt::hs256(
        jwt::SECRET,
        &json!({"sub": "x", "nbf": now + 120, "exp": now + 600}),
    );
    let r = refused(&h, &format!("/sse?token={future}"), &[]);
    assert_problem(&r, 401, "invalid_jwt", "Unauthorized");
    let past = jwt::hs256(
        jwt::SECRET,
        &json!({"sub": "nbf-past", "nbf": now - 10, "exp": now + 600}),
    );
    let mut c = h.sse_with_token(&past);
    assert_is_user(&h, &mut c, "nbf-past");
}

#[test]
fn expiry_and_leeway() {
    let h = herald(); // default leeway 5 s
    let now = jwt::now();
    let long_gone = jwt::hs256(jwt::SECRET, &json!({"sub": "x", "exp": now - 60}));
    let r = refused(&h, &format!("/sse?token={long_gone}"), &[]);
    assert_problem(&r, 401, "expired_jwt", "Unauthorized");
    // Just expired, within the leeway: accepted.
    let just = jwt::hs256(jwt::SECRET, &json!({"sub": "in-leeway", "exp": now - 1}));
    let mut c = h.sse_with_token(&just);
    assert_is_user(&h, &mut c, "in-leeway");

    let h = Herald::start(&[("JWT_SECRET", jwt::SECRET), ("JWT_LEEWAY_SECONDS", "0")]);
    let t = jwt::hs256(jwt::SECRET, &json!({"sub": "x", "exp": jwt::now() - 3}));
    let r = refused(&h, &format!("/sse?token={t}"), &[]);
    assert_problem(&r, 401, "expired_jwt", "Unauthorized");

    let h = Herald::start(&[("JWT_SECRET", jwt::SECRET), ("JWT_LEEWAY_SECONDS", "120")]);
    let t = jwt::hs256(
        jwt::SECRET,
        &json!({"sub": "big-leeway", "exp": jwt::now() - 60}),
    );
    let mut c = h.sse_with_token(&t);
    assert_is_user(&h, &mut c, "big-leeway");
}

#[test]
fn sub_or_user_id() {
    let h = herald();
    let exp = jwt::now() + 600;
    let t = jwt::hs256(jwt::SECRET, &json!({"userId": "by-userid", "exp": exp}));
    let mut c = h.sse_with_token(&t);
    assert_is_user(&h, &mut c, "by-userid");
    // `sub` wins over `userId`.
    let t = jwt::hs256(
        jwt::SECRET,
        &json!({"sub": "the-sub", "userId": "the-userid", "exp": exp}),
    );
    let mut c = h.sse_with_token(&t);
    assert_is_user(&h, &mut c, "the-sub");
    // Neither: invalid.
    let t = jwt::hs256(jwt::SECRET, &json!({"name": "nobody", "exp": exp}));
    let r = refused(&h, &format!("/sse?token={t}"), &[]);
    assert_problem(&r, 401, "invalid_jwt", "Unauthorized");
}

#[test]
fn anonymous_listeners_get_broadcasts_only() {
    let h = Herald::start(&[("JWT_SECRET", jwt::SECRET), ("ALLOW_ANONYMOUS", "true")]);
    let mut anon = h.sse("/sse", &[]);
    let mut named = h.sse_with_token(&jwt::user("u1"));
    h.publish_ok(r#"{"to":"u1","message":"targeted"}"#);
    h.publish_ok(r#"{"message":"broadcast"}"#);
    assert_eq!(named.expect_event().data, "targeted");
    assert_eq!(named.expect_event().data, "broadcast");
    assert_eq!(
        anon.expect_event().data,
        "broadcast",
        "anonymous listener got a targeted event"
    );
    // Anonymous listeners are app `default`.
    h.publish_ok(r#"{"app":"shop","message":"shop only"}"#);
    h.publish_ok(r#"{"app":"default","message":"default only"}"#);
    assert_eq!(anon.expect_event().data, "default only");
    // A bad token is still refused when anonymous is allowed.
    let t = jwt::hs256("nope", &json!({"sub": "x", "exp": jwt::now() + 60}));
    let r = refused(&h, &format!("/sse?token={t}"), &[]);
    assert_problem(&r, 401, "invalid_jwt", "Unauthorized");

    // Without ALLOW_ANONYMOUS: refused.
    let h = herald();
    let r = refused(&h, "/sse", &[]);
    assert_problem(&r, 401, "missing_token", "Unauthorized");
}

/// Asserts `token` is refused with 401 `invalid_jwt` and exactly `detail`.
fn refused_with(h: &Herald, token: &str, detail: &str) {
    let r = refused(h, &format!("/sse?token={token}"), &[]);
    let v = assert_problem(&r, 401, "invalid_jwt", "Unauthorized");
    assert_eq!(v["detail"], detail, "token {token}");
}

#[test]
fn claims_of_the_wrong_type_are_refused_by_name() {
    let h = herald();
    let exp = jwt::now() + 600;
    let cases = [
        ("exp", json!("1900000000"), "number of seconds"),
        ("exp", json!(-5), "number of seconds"),
        ("exp", json!(1e30), "number of seconds"),
        ("exp", json!(true), "number of seconds"),
        ("nbf", json!("1600000000"), "number of seconds"),
        ("iat", json!("yesterday"), "number of seconds"),
        ("iss", json!(42), "non-empty string"),
        ("aud", json!({"web": true}), "string or an array of strings"),
        ("sub", json!(true), "string or a number"),
        ("sub", json!(["u1"]), "string or a number"),
    ];
    for (claim, value, what) in cases {
        let mut claims = json!({"sub": "u1", "exp": exp});
        claims[claim] = value;
        let detail = format!("Invalid JWT token: `{claim}` must be a {what}");
        refused_with(&h, &jwt::hs256(jwt::SECRET, &claims), &detail);
    }
    // Numbers in other forms are still numbers of seconds.
    let t = jwt::hs256(
        jwt::SECRET,
        &json!({"sub": "float-exp", "exp": exp as f64 + 0.5, "nbf": 1.5e9, "iat": 0}),
    );
    let mut c = h.sse_with_token(&t);
    assert_is_user(&h, &mut c, "float-exp");
}

/// An HS256 token with its own JOSE header, signed with [`jwt::SECRET`]
/// (`jsonwebtoken`'s `Header` cannot carry `crit`).
fn with_header(header: &Value, claims: &Value) -> String {
    let message = format!(
        "{}.{}",
        jwt::b64url(header.to_string().as_bytes()),
        jwt::b64url(claims.to_string().as_bytes())
    );
    let key = EncodingKey::from_secret(jwt::SECRET.as_bytes());
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).expect("sign");
    format!("{message}.{sig}")
}

#[test]
fn unknown_crit_header_is_refused() {
    let h = herald();
    let claims = json!({"sub": "crit-user", "exp": jwt::now() + 600});
    // The hand-made token is sound without `crit`.
    let plain = with_header(&json!({"alg": "HS256", "typ": "JWT"}), &claims);
    let mut c = h.sse_with_token(&plain);
    assert_is_user(&h, &mut c, "crit-user");
    let t = with_header(
        &json!({"alg": "HS256", "typ": "JWT", "b64": false, "crit": ["b64"]}),
        &claims,
    );
    refused_with(
        &h,
        &t,
        "Invalid JWT token: `crit` header lists parameters herald does not understand (\"b64\")",
    );
    let t = with_header(&json!({"alg": "HS256", "crit": "x-custom"}), &claims);
    let r = refused(&h, &format!("/sse?token={t}"), &[]);
    let v = assert_problem(&r, 401, "invalid_jwt", "Unauthorized");
    assert!(v["detail"].as_str().unwrap().contains("`crit`"), "{v}");
}

/// Sleeps until the wall clock's second is at least `unix_s`.
fn sleep_until_second(unix_s: u64) {
    while common::unix_secs() < unix_s {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `herald_disconnects_total{reason="expired"}` from `/metrics`.
fn expired_disconnects(h: &Herald) -> String {
    let req = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    let text = http_exchange(h.admin_addr(), req, EVENT_TIMEOUT)
        .expect("GET /metrics")
        .body_text();
    let line = text
        .lines()
        .find(|l| l.starts_with("herald_disconnects_total{reason=\"expired\"}"))
        .unwrap_or_else(|| panic!("no expired reason in /metrics:\n{text}"));
    line.rsplit(' ').next().unwrap().to_string()
}

#[test]
fn a_stream_ends_when_its_token_expires() {
    let h = Herald::start(&[("JWT_SECRET", jwt::SECRET), ("JWT_LEEWAY_SECONDS", "0")]);
    let exp = jwt::now() + 2;
    let token = jwt::hs256(jwt::SECRET, &json!({"sub": "short", "exp": exp}));
    let mut short = h.sse_with_token(&token);
    let mut long = h.sse_with_token(&jwt::user("long"));
    assert_is_user(&h, &mut short, "short");

    // One second past expiry (ticks are at most a second apart), publish:
    // the expired stream must be closed without it.
    sleep_until_second(exp + 1);
    h.publish_ok(r#"{"to":["short","long"],"message":"after expiry"}"#);
    assert_eq!(long.expect_non_ping().data, "after expiry");
    loop {
        match short.next_event(EVENT_TIMEOUT) {
            Some(e) if e.event.as_deref() == Some("ping") => continue,
            Some(e) => panic!("the expired stream got {e:?}"),
            None => break,
        }
    }
    assert!(short.is_eof(), "the expired stream is still open");
    assert_eq!(expired_disconnects(&h), "1");

    // What the browser's EventSource does next: reconnect with the same
    // token, and be told it expired.
    let r = refused(&h, &format!("/sse?token={token}"), &[]);
    assert_problem(&r, 401, "expired_jwt", "Unauthorized");
    assert_is_user(&h, &mut long, "long");
}

#[test]
fn streams_outlive_their_tokens_with_close_on_token_expiry_false() {
    let h = Herald::start(&[
        ("JWT_SECRET", jwt::SECRET),
        ("JWT_LEEWAY_SECONDS", "0"),
        ("CLOSE_ON_TOKEN_EXPIRY", "false"),
    ]);
    let exp = jwt::now() + 2;
    let token = jwt::hs256(jwt::SECRET, &json!({"sub": "kept", "exp": exp}));
    let mut c = h.sse_with_token(&token);
    assert_is_user(&h, &mut c, "kept");
    sleep_until_second(exp + 2);
    assert_is_user(&h, &mut c, "kept");
    assert!(!c.is_eof());
    assert_eq!(expired_disconnects(&h), "0");
}
