//! Fuzzes the JWT claims policy (`Verifier::check_claims`) on arbitrary JSON,
//! the whole token path (`Verifier::verify_at`) on the same claims signed for
//! real, JOSE headers (`crit`) on a properly signed token, and the raw input
//! as a token; checking the contracts of `conn::auth`, not only "no panic".
//!
//! Input: one selector byte, then JSON. Selector bit 0 picks the policy
//! (default, or issuers + audience + no leeway); bit 1 the mode (the JSON is
//! the claims, or the header); bits 2..8 an offset of -32..=31 s from the
//! claims' own `exp` (so that the fuzzer reaches the boundaries) for `now`.
#![no_main]

use std::sync::OnceLock;

use herald::config::Config;
use herald::conn::auth::{AuthError, Verifier, DEFAULT_APP};
use herald::conn::response::Problem;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const SECRET: &str = "fuzz-secret";
/// `now` when the claims have no usable `exp`.
const T: u64 = 1_700_000_000;

struct Policy {
    verifier: Verifier,
    leeway: u64,
    issuers: &'static [&'static str],
    audience: &'static [&'static str],
}

fn policies() -> &'static [Policy; 2] {
    static P: OnceLock<[Policy; 2]> = OnceLock::new();
    P.get_or_init(|| {
        let make = |vars: &[(&str, &str)], leeway, issuers, audience| {
            let map: std::collections::HashMap<String, String> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let cfg = Config::from_lookup(&move |k| map.get(k).cloned()).expect("config");
            Policy {
                verifier: Verifier::from_config(&cfg).expect("verifier"),
                leeway,
                issuers,
                audience,
            }
        };
        [
            make(&[("JWT_SECRET", SECRET)], 5, &[], &[]),
            make(
                &[
                    ("JWT_SECRET", SECRET),
                    ("JWT_LEEWAY_SECONDS", "0"),
                    ("JWT_ISSUER", "shop,default"),
                    ("JWT_AUDIENCE", "web,app"),
                ],
                0,
                &["shop", "default"],
                &["web", "app"],
            ),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, json)) = data.split_first() else {
        return;
    };
    let p = &policies()[usize::from(selector & 1)];
    // The raw input as a token: nothing unsigned gets through.
    if let Ok(text) = std::str::from_utf8(data) {
        let e = p
            .verifier
            .verify_at(Some(text), T)
            .expect_err("forged token");
        assert_eq!(e.problem, Problem::InvalidJwt, "{e:?}");
        assert!(e.detail.starts_with("Invalid JWT token"), "{e:?}");
    }
    let Ok(value) = serde_json::from_slice::<Value>(json) else {
        return;
    };
    if selector & 2 == 0 {
        let offset = i64::from(selector >> 2) - 32;
        let now = seconds(value.get("exp"), false)
            .unwrap_or(T)
            .saturating_add_signed(offset);
        check_claims(p, &value, now);
        signed_claims(p, &value, now);
    } else {
        signed_header(p, &value);
    }
});

/// A NumericDate as the policy reads it, or `None` when absent or invalid.
fn seconds(v: Option<&Value>, up: bool) -> Option<u64> {
    let n = v?.as_number()?;
    n.as_u64().or_else(|| {
        let f = n.as_f64()?;
        (0.0..18_446_744_073_709_551_616.0).contains(&f).then(|| {
            if up {
                f.ceil() as u64
            } else {
                f.floor() as u64
            }
        })
    })
}

fn check_claims(p: &Policy, claims: &Value, now: u64) {
    let result = p.verifier.check_claims(claims, now);
    let Ok(id) = result else {
        check_refusal(p, claims, now, &result.unwrap_err());
        return;
    };
    let c = claims
        .as_object()
        .expect("accepted claims that are not an object");
    for name in ["exp", "nbf", "iat"] {
        let v = c.get(name);
        assert!(
            v.is_none_or(Value::is_null) || seconds(v, false).is_some(),
            "accepted {name}: {v:?}"
        );
    }
    let exp = seconds(c.get("exp"), false).expect("accepted without exp");
    assert_eq!(id.exp, Some(exp));
    assert!(
        now < exp.saturating_add(p.leeway),
        "accepted an expired token"
    );
    if let Some(nbf) = seconds(c.get("nbf"), true) {
        assert!(nbf <= now.saturating_add(p.leeway), "accepted before nbf");
    }
    // The app: `iss`, else the default; within the accepted issuers.
    let iss = c.get("iss").and_then(Value::as_str);
    assert_eq!(id.app, iss.unwrap_or(DEFAULT_APP));
    assert!(!id.app.is_empty());
    assert!(p.issuers.is_empty() || p.issuers.contains(&id.app.as_str()));
    if !p.audience.is_empty() {
        let aud = match c.get("aud") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            other => panic!("accepted aud {other:?}"),
        };
        assert!(aud.iter().any(|a| p.audience.contains(a)));
    }
    // The user: `sub`, else `userId`; a string as given, a number as JSON.
    let user = id.user.as_deref().expect("a token always names a user");
    assert!(!user.is_empty());
    let from = |v: Option<&Value>| match v {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let want = from(c.get("sub")).or_else(|| from(c.get("userId")));
    assert_eq!(Some(user), want.as_deref());
    // Valid until the last second before exp + leeway, expired from then
    // on: the second the reactor ends the stream.
    if let Some(end) = exp.checked_add(p.leeway) {
        assert_eq!(p.verifier.check_claims(claims, end - 1), Ok(id));
        let e = p.verifier.check_claims(claims, end).unwrap_err();
        assert_eq!(e.problem, Problem::ExpiredJwt, "{e:?}");
    }
}

fn check_refusal(p: &Policy, claims: &Value, now: u64, e: &AuthError) {
    assert!(!e.detail.is_empty());
    match e.problem {
        Problem::InvalidJwt => assert!(e.detail.starts_with("Invalid JWT token"), "{e:?}"),
        Problem::ExpiredJwt => {
            let exp = seconds(claims.get("exp"), false).expect("expired without exp");
            assert!(now >= exp.saturating_add(p.leeway), "{e:?} at {now}");
        }
        Problem::WrongIssuer => assert!(!p.issuers.is_empty(), "{e:?}"),
        other => panic!("unexpected problem {other:?}"),
    }
    // A claim named as of the wrong type is present, and of the wrong type.
    if let Some(rest) = e.detail.strip_prefix("Invalid JWT token: `") {
        let name = rest.split('`').next().unwrap();
        if rest.contains("` must be") {
            let v = claims
                .get(name)
                .unwrap_or_else(|| panic!("{name} is absent: {e:?}"));
            assert!(!v.is_null(), "{e:?}");
            if name == "exp" || name == "nbf" || name == "iat" {
                assert_eq!(seconds(Some(v), false), None, "{name}: {v} is fine");
            }
        }
    }
}

/// The claims signed for real: the whole path agrees with the policy alone
/// (on the claims as they come back from JSON, as the verifier reads them).
fn signed_claims(p: &Policy, claims: &Value, now: u64) {
    if !claims.is_object() {
        return;
    }
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let token = encode(&Header::new(Algorithm::HS256), claims, &key).expect("encode");
    let text = serde_json::to_string(claims).unwrap();
    let read: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        p.verifier.verify_at(Some(&token), now),
        p.verifier.check_claims(&read, now)
    );
}

/// `header` as the JOSE header of a properly signed HS256 token with valid
/// claims: refused when it has `crit`, accepted when it is a plain HS256
/// header.
fn signed_header(p: &Policy, header: &Value) {
    let claims = json!({"sub": "u", "iss": "shop", "aud": "web", "exp": T + 600});
    let message = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap();
    let token = format!("{message}.{sig}");
    let result = p.verifier.verify_at(Some(&token), T);
    let Ok(parsed) = jsonwebtoken::decode_header(&token) else {
        assert!(result.is_err());
        return;
    };
    if header.get("crit").is_some() {
        let e = result.expect_err("accepted a header with crit");
        assert!(e.detail.contains("`crit`"), "{e:?}");
    } else if parsed.alg == Algorithm::HS256 {
        let id = result.expect("refused a sound token");
        assert_eq!(id.user.as_deref(), Some("u"));
    } else {
        assert!(result.is_err());
    }
}

/// Base64url without padding.
fn b64url(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [0, 1, 2].map(|i| u32::from(chunk.get(i).copied().unwrap_or(0)));
        let n = (b[0] << 16) | (b[1] << 8) | b[2];
        for i in 0..=chunk.len() {
            out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}
