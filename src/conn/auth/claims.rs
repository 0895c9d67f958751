//! The claims policy (SPEC §2), pure: a token's verified claims and `now` in,
//! the listener's identity or a refusal out. No signature here; the caller
//! verified it (or, in the fuzz target, there is none).
//!
//! Contracts:
//! - A registered claim of the wrong type is refused with a detail naming it,
//!   whatever else is wrong: `exp`, `nbf`, `iat` must be non-negative numbers
//!   of seconds below 2^64 (fractions round toward refusal: `exp` down, `nbf`
//!   up); `iss` a non-empty string; `aud` a string or an array of strings;
//!   `sub` a string or a number. `userId` is read (and checked) only when
//!   `sub` gives no user id. `null` counts as absent.
//! - `exp` is required. A token is valid while `now < exp + leeway` and
//!   `nbf <= now + leeway` (RFC 7519 §4.1.4, §4.1.5): the second a stream's
//!   token stops being accepted here is the second the reactor ends the
//!   stream (`CLOSE_ON_TOKEN_EXPIRY`).
//! - The JOSE header's `crit` (RFC 7515 §4.1.11) is refused whenever present:
//!   herald understands no extension parameter.

use serde_json::{Map, Value};

use super::{invalid, AuthError, Identity, DEFAULT_APP};
use crate::conn::response::Problem;

/// What the claims are checked against (from the configuration).
#[derive(Debug, Clone)]
pub(super) struct Policy {
    pub leeway: u64,
    /// Accepted `iss` values; empty: any.
    pub issuers: Vec<String>,
    /// Accepted `aud` values; empty: `aud` is not required or matched.
    pub audience: Vec<String>,
}

/// Checks `claims` at unix second `now`.
pub(super) fn check(claims: &Value, policy: &Policy, now: u64) -> Result<Identity, AuthError> {
    let Value::Object(c) = claims else {
        return Err(invalid(
            "Invalid JWT token: the claims are not a JSON object",
        ));
    };
    // Types first, so that a claim of the wrong type is always named.
    let exp = seconds(c, "exp", false)?;
    let nbf = seconds(c, "nbf", true)?;
    seconds(c, "iat", false)?;
    let iss = issuer(c)?;
    let aud = audience(c)?;
    let sub = user_id(c, "sub")?;

    let exp = exp.ok_or_else(|| invalid("Invalid JWT token: missing `exp`"))?;
    if !policy.audience.is_empty() && aud.is_none() {
        return Err(invalid("Invalid JWT token: missing `aud`"));
    }
    if now >= exp.saturating_add(policy.leeway) {
        return Err(AuthError {
            problem: Problem::ExpiredJwt,
            detail: "JWT token has expired".into(),
        });
    }
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(policy.leeway)) {
        return Err(invalid("Invalid JWT token: not valid yet (nbf)"));
    }
    if let (false, Some(aud)) = (policy.audience.is_empty(), aud) {
        if !aud.iter().any(|a| policy.audience.iter().any(|p| p == a)) {
            return Err(invalid("Invalid JWT token: audience not accepted"));
        }
    }
    let app = iss.unwrap_or(DEFAULT_APP).to_string();
    if !policy.issuers.is_empty() && !policy.issuers.contains(&app) {
        return Err(AuthError {
            problem: Problem::WrongIssuer,
            detail: format!("issuer {app:?} is not accepted"),
        });
    }
    let user = match sub {
        Some(user) => user,
        None => user_id(c, "userId")?
            .ok_or_else(|| invalid("Invalid JWT token: no user id (`sub` or `userId`)"))?,
    };
    Ok(Identity {
        app,
        user: Some(user),
        exp: Some(exp),
    })
}

/// A NumericDate claim (RFC 7519 §2) in whole seconds; `up`: round a
/// fraction up rather than down.
fn seconds(c: &Map<String, Value>, name: &str, up: bool) -> Result<Option<u64>, AuthError> {
    let wrong = || {
        invalid(format!(
            "Invalid JWT token: `{name}` must be a number of seconds"
        ))
    };
    match c.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(s), _) => Ok(Some(s)),
            // 2^64 is exactly representable; anything below it fits a u64.
            (None, Some(f)) if (0.0..18_446_744_073_709_551_616.0).contains(&f) => {
                Ok(Some(if up { f.ceil() } else { f.floor() } as u64))
            }
            _ => Err(wrong()),
        },
        Some(_) => Err(wrong()),
    }
}

/// `iss`: absent, or a non-empty string.
fn issuer(c: &Map<String, Value>) -> Result<Option<&str>, AuthError> {
    match c.get("iss") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
        Some(_) => Err(invalid(
            "Invalid JWT token: `iss` must be a non-empty string",
        )),
    }
}

/// `aud`: absent, one string, or an array of strings.
fn audience(c: &Map<String, Value>) -> Result<Option<Vec<&str>>, AuthError> {
    let wrong = || invalid("Invalid JWT token: `aud` must be a string or an array of strings");
    match c.get("aud") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(vec![s.as_str()])),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().ok_or_else(wrong))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(wrong()),
    }
}

/// A user-id claim: a non-empty string or a number (written as JSON writes
/// it); absent, `null` or `""` give none.
fn user_id(c: &Map<String, Value>, name: &str) -> Result<Option<String>, AuthError> {
    match c.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok((!s.is_empty()).then(|| s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(invalid(format!(
            "Invalid JWT token: `{name}` must be a string or a number"
        ))),
    }
}

/// Refuses a JOSE header (`head`, its base64url segment) that has `crit`.
/// The header has already been decoded once (by
/// `jsonwebtoken::decode_header`), so one that fails here is malformed only
/// in ways that library let through.
pub(super) fn check_crit(head: &str) -> Result<(), AuthError> {
    let malformed = || invalid("Invalid JWT token: malformed header");
    let json = b64url_decode(head).ok_or_else(malformed)?;
    let header: Value = serde_json::from_slice(&json).map_err(|_| malformed())?;
    let Some(crit) = header.get("crit") else {
        return Ok(());
    };
    // Name what was listed (bounded: the detail is echoed to the client).
    let names: Vec<String> = match crit {
        Value::Array(items) => items
            .iter()
            .take(4)
            .map(|v| match v {
                Value::String(s) => format!("{:?}", s.chars().take(64).collect::<String>()),
                other => format!("{:.64}", other.to_string()),
            })
            .collect(),
        _ => Vec::new(),
    };
    Err(invalid(if names.is_empty() {
        "Invalid JWT token: `crit` header must list parameters, and herald understands none"
            .to_string()
    } else {
        format!(
            "Invalid JWT token: `crit` header lists parameters herald does not understand ({})",
            names.join(", ")
        )
    }))
}

/// Base64url without padding (RFC 7515 §2); `None` on any other byte or an
/// impossible length.
pub(super) fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // One character alone (6 bits) encodes no byte.
    (bits < 6).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips() {
        for (text, enc) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("\u{ff}\u{fe}?", "w7_Dvj8"),
        ] {
            assert_eq!(b64url_decode(enc).as_deref(), Some(text.as_bytes()));
        }
        assert_eq!(b64url_decode("Zm9v="), None, "padding");
        assert_eq!(b64url_decode("Zm+v"), None, "standard alphabet");
        assert_eq!(b64url_decode("Z"), None, "one character");
    }
}
