//! Verifier unit tests: key families, refusals, the claims policy (types,
//! `exp`/`nbf` boundaries, `aud`, `iss`, user id) and `crit`.

use super::*;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

fn cfg(pairs: &[(&str, &str)]) -> Config {
    let map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(&move |k| map.get(k).cloned()).unwrap()
}

fn now() -> u64 {
    crate::sys::clock::unix_secs()
}

fn hs(alg: Algorithm, secret: &str, claims: Value) -> String {
    encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn verifier(pairs: &[(&str, &str)]) -> Verifier {
    Verifier::from_config(&cfg(pairs)).unwrap()
}

#[test]
fn hmac_family_and_identity() {
    let v = verifier(&[("JWT_SECRET", "s3cret")]);
    let exp = now() + 60;
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let t = hs(alg, "s3cret", json!({"sub":"u1","iss":"shop","exp":exp}));
        assert_eq!(
            v.verify(Some(&t)).unwrap(),
            Identity {
                app: "shop".into(),
                user: Some("u1".into()),
                exp: Some(exp),
            }
        );
    }
    let t = hs(Algorithm::HS256, "s3cret", json!({"userId":"u2","exp":exp}));
    assert_eq!(
        v.verify(Some(&t)).unwrap(),
        Identity {
            app: "default".into(),
            user: Some("u2".into()),
            exp: Some(exp),
        }
    );
}

#[test]
fn refusals() {
    let v = verifier(&[("JWT_SECRET", "s3cret")]);
    let problem = |t: &str| v.verify(Some(t)).unwrap_err().problem;
    assert_eq!(
        problem(&hs(
            Algorithm::HS256,
            "other",
            json!({"sub":"u","exp":now()+60})
        )),
        Problem::InvalidJwt
    );
    assert_eq!(
        problem(&hs(
            Algorithm::HS256,
            "s3cret",
            json!({"sub":"u","exp":now()-60})
        )),
        Problem::ExpiredJwt
    );
    // Within leeway (5 s) an expired token is still accepted.
    assert!(v
        .verify(Some(&hs(
            Algorithm::HS256,
            "s3cret",
            json!({"sub":"u","exp":now()-2})
        )))
        .is_ok());
    assert_eq!(
        problem(&hs(Algorithm::HS256, "s3cret", json!({"sub":"u"}))),
        Problem::InvalidJwt
    );
    assert_eq!(
        problem(&hs(Algorithm::HS256, "s3cret", json!({"exp":now()+60}))),
        Problem::InvalidJwt
    );
    assert_eq!(
        problem(&hs(
            Algorithm::HS256,
            "s3cret",
            json!({"sub":"u","exp":now()+60,"nbf":now()+600})
        )),
        Problem::InvalidJwt
    );
    assert_eq!(problem("not.a.jwt"), Problem::InvalidJwt);
    // alg none: header {"alg":"none"}, no signature.
    assert_eq!(
        problem("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1IiwiZXhwIjo5OTk5OTk5OTk5fQ."),
        Problem::InvalidJwt
    );
    assert_eq!(v.verify(None).unwrap_err().problem, Problem::MissingToken);
}

#[test]
fn issuer_and_audience_policy() {
    let v = verifier(&[
        ("JWT_SECRET", "k"),
        ("JWT_ISSUER", "shop, blog"),
        ("JWT_AUDIENCE", "web"),
    ]);
    let ok = hs(
        Algorithm::HS256,
        "k",
        json!({"sub":"u","iss":"blog","aud":"web","exp":now()+60}),
    );
    assert!(v.verify(Some(&ok)).is_ok());
    let wrong_iss = hs(
        Algorithm::HS256,
        "k",
        json!({"sub":"u","iss":"evil","aud":"web","exp":now()+60}),
    );
    assert_eq!(
        v.verify(Some(&wrong_iss)).unwrap_err().problem,
        Problem::WrongIssuer
    );
    let no_iss = hs(
        Algorithm::HS256,
        "k",
        json!({"sub":"u","aud":"web","exp":now()+60}),
    );
    assert_eq!(
        v.verify(Some(&no_iss)).unwrap_err().problem,
        Problem::WrongIssuer
    );
    let wrong_aud = hs(
        Algorithm::HS256,
        "k",
        json!({"sub":"u","iss":"shop","aud":"app","exp":now()+60}),
    );
    assert_eq!(
        v.verify(Some(&wrong_aud)).unwrap_err().problem,
        Problem::InvalidJwt
    );
    let no_aud = hs(
        Algorithm::HS256,
        "k",
        json!({"sub":"u","iss":"shop","exp":now()+60}),
    );
    assert_eq!(
        v.verify(Some(&no_aud)).unwrap_err().problem,
        Problem::InvalidJwt
    );
}

#[test]
fn anonymous() {
    let v = verifier(&[("ALLOW_ANONYMOUS", "true")]);
    assert_eq!(
        v.verify(None).unwrap(),
        Identity {
            app: "default".into(),
            user: None,
            exp: None,
        }
    );
    assert!(!v.has_keys());
}

#[test]
fn bad_public_key_names_variable() {
    let e = Verifier::from_config(&cfg(&[("JWT_PUBLIC_KEY", "garbage")]))
        .err()
        .unwrap();
    assert_eq!(e.var, "JWT_PUBLIC_KEY");
    let e = Verifier::from_config(&cfg(&[("JWT_PUBLIC_KEY_FILE", "/nonexistent/key.pem")]))
        .err()
        .unwrap();
    assert_eq!(e.var, "JWT_PUBLIC_KEY_FILE");
}

/// The refusal of `claims` signed with the right key, checked both ways in.
fn refusal(v: &Verifier, claims: Value, at: u64) -> AuthError {
    let by_token = v
        .verify_at(Some(&hs(Algorithm::HS256, "k", claims.clone())), at)
        .unwrap_err();
    assert_eq!(v.check_claims(&claims, at).unwrap_err(), by_token);
    by_token
}

#[test]
fn claims_of_the_wrong_type_are_refused_by_name() {
    let v = verifier(&[("JWT_SECRET", "k")]);
    let t = 1_700_000_000u64;
    let cases = [
        ("exp", json!("1800000000")),
        ("exp", json!(-5)),
        ("exp", json!(-0.5)),
        ("exp", json!(1e30)),
        ("exp", json!(true)),
        ("exp", json!([t + 60])),
        ("exp", json!({"s": t + 60})),
        ("nbf", json!("yesterday")),
        ("nbf", json!(false)),
        ("iat", json!("now")),
        ("iss", json!(7)),
        ("iss", json!(["shop"])),
        ("iss", json!("")),
        ("aud", json!(5)),
        ("aud", json!(["web", 1])),
        ("sub", json!(true)),
        ("sub", json!({"id": "u"})),
    ];
    for (claim, value) in cases {
        let mut claims = json!({"sub": "u", "exp": t + 60});
        claims[claim] = value.clone();
        let e = refusal(&v, claims, t);
        assert_eq!(e.problem, Problem::InvalidJwt, "{claim}: {value}");
        assert!(
            e.detail.starts_with("Invalid JWT token: `")
                && e.detail.contains(&format!("`{claim}`")),
            "{claim}: {value} -> {}",
            e.detail
        );
    }
    // A wrong type is named even when the token is also expired.
    let e = refusal(&v, json!({"sub": "u", "exp": t - 600, "nbf": "x"}), t);
    assert_eq!(
        e.detail,
        "Invalid JWT token: `nbf` must be a number of seconds"
    );
    // `userId` is read only without a usable `sub`.
    let e = refusal(&v, json!({"userId": true, "exp": t + 60}), t);
    assert_eq!(
        e.detail,
        "Invalid JWT token: `userId` must be a string or a number"
    );
    let ok = v.check_claims(&json!({"sub": "u", "userId": [1], "exp": t + 60}), t);
    assert_eq!(ok.unwrap().user.as_deref(), Some("u"));
    let e = refusal(&v, json!([{"sub": "u", "exp": t + 60}]), t);
    assert_eq!(e.problem, Problem::InvalidJwt);
}

#[test]
fn numeric_dates_and_their_boundaries() {
    let t = 1_700_000_000u64;
    let v = verifier(&[("JWT_SECRET", "k"), ("JWT_LEEWAY_SECONDS", "5")]);
    let id = |claims: Value, at: u64| v.check_claims(&claims, at);
    // Valid while now < exp + leeway: the reactor ends streams at exp + leeway.
    let claims = json!({"sub": "u", "exp": t});
    assert_eq!(id(claims.clone(), t + 4).unwrap().exp, Some(t));
    assert_eq!(id(claims, t + 5).unwrap_err().problem, Problem::ExpiredJwt);
    // Fractions round toward refusal; null is absent.
    let claims = json!({"sub": "u", "exp": t as f64 + 0.9});
    assert_eq!(id(claims.clone(), t).unwrap().exp, Some(t));
    assert!(id(claims, t + 5).is_err());
    let claims = json!({"sub": "u", "exp": null});
    assert_eq!(
        id(claims, t).unwrap_err().detail,
        "Invalid JWT token: missing `exp`"
    );
    // nbf: accepted from nbf - leeway on.
    let claims = json!({"sub": "u", "exp": t + 600, "nbf": t + 5});
    assert!(id(claims.clone(), t).is_ok());
    assert!(id(claims, t - 1).is_err());
    let claims = json!({"sub": "u", "exp": t + 600, "nbf": t as f64 + 5.5});
    assert_eq!(
        id(claims.clone(), t).unwrap_err().detail,
        "Invalid JWT token: not valid yet (nbf)"
    );
    assert!(id(claims, t + 1).is_ok());
    let claims = json!({"sub": "u", "exp": t + 600, "nbf": null, "iat": t});
    assert!(id(claims, t).is_ok());
    // The largest exp representable is fine (no overflow with the leeway).
    let claims = json!({"sub": "u", "exp": u64::MAX});
    assert_eq!(id(claims, t).unwrap().exp, Some(u64::MAX));
}

#[test]
fn audience_policy_on_claims() {
    let t = 1_700_000_000u64;
    let v = verifier(&[("JWT_SECRET", "k"), ("JWT_AUDIENCE", "web,app")]);
    let aud = |a: Value| v.check_claims(&json!({"sub": "u", "exp": t + 60, "aud": a}), t);
    assert!(aud(json!("web")).is_ok());
    assert!(aud(json!(["x", "app"])).is_ok());
    assert_eq!(
        aud(json!([])).unwrap_err().detail,
        "Invalid JWT token: audience not accepted"
    );
    assert_eq!(
        aud(Value::Null).unwrap_err().detail,
        "Invalid JWT token: missing `aud`"
    );
}

/// Base64url without padding.
fn b64url(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [0, 1, 2].map(|i| u32::from(chunk.get(i).copied().unwrap_or(0)));
        let n = (b[0] << 16) | (b[1] << 8) | b[2];
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// An HS256 token with the header `header`, properly signed with `secret`.
fn with_header(header: Value, secret: &str, claims: Value) -> String {
    let message = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let key = EncodingKey::from_secret(secret.as_bytes());
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap();
    format!("{message}.{sig}")
}

#[test]
fn crit_header_is_refused() {
    let v = verifier(&[("JWT_SECRET", "k")]);
    let claims = json!({"sub": "u", "exp": now() + 60});
    let plain = with_header(json!({"alg": "HS256", "typ": "JWT"}), "k", claims.clone());
    assert!(
        v.verify(Some(&plain)).is_ok(),
        "the hand-made token is sound"
    );
    for crit in [
        json!(["b64"]),
        json!(["exp", "x-custom"]),
        json!([]),
        json!("b64"),
        json!(null),
    ] {
        let header = json!({"alg": "HS256", "typ": "JWT", "crit": crit, "b64": false});
        let e = v
            .verify(Some(&with_header(header, "k", claims.clone())))
            .unwrap_err();
        assert_eq!(e.problem, Problem::InvalidJwt);
        assert!(e.detail.contains("`crit`"), "{crit}: {}", e.detail);
    }
    let e = v
        .verify(Some(&with_header(
            json!({"alg": "HS256", "crit": ["b64"], "b64": false}),
            "k",
            claims,
        )))
        .unwrap_err();
    assert_eq!(
        e.detail,
        "Invalid JWT token: `crit` header lists parameters herald does not understand (\"b64\")"
    );
}
