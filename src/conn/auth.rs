//! JWT verification (SPEC §2), pure: token in, identity or refusal out.
//!
//! The configured keys decide which algorithms are accepted: `JWT_SECRET`
//! allows HS256/384/512; a public key allows only its own family (RSA →
//! RS*/PS*, EC → ES256/ES384, Ed25519 → EdDSA). A token whose `alg` is not in
//! the configured families is refused before any signature check, so an HMAC
//! token can never be checked against a public key and `alg: none` never
//! parses. A header with `crit` is refused (herald understands no
//! extension).
//!
//! `jsonwebtoken` checks the signature only (`crypto::verify`, with the
//! key whose family lists the header's `alg`); every claim is checked by
//! [`Verifier::check_claims`] (the `claims` module: types, `exp`, `nbf`,
//! `aud`, `iss`, user id), a pure function of the claims and `now` that the
//! fuzz target drives without a signature.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::config::{Config, PublicKey};

use super::response::Problem;

mod claims;
#[cfg(test)]
mod tests;

/// The application of a token without `iss`.
pub const DEFAULT_APP: &str = "default";

/// Who a listener is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub app: String,
    /// `None` for anonymous listeners.
    pub user: Option<String>,
    /// The token's `exp` (unix seconds, leeway not added); `None` for
    /// anonymous listeners. The reactor ends the stream at `exp` + leeway
    /// (`CLOSE_ON_TOKEN_EXPIRY`).
    pub exp: Option<u64>,
}

/// A refusal: which problem, and what exactly was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    pub problem: Problem,
    pub detail: String,
}

fn invalid(detail: impl Into<String>) -> AuthError {
    AuthError {
        problem: Problem::InvalidJwt,
        detail: detail.into(),
    }
}

struct Key {
    key: DecodingKey,
    /// This key's family (HMAC, RSA, EC or Ed25519) and nothing else.
    algorithms: Vec<Algorithm>,
}

/// Checks tokens against the configured keys and claims policy.
pub struct Verifier {
    hmac: Option<Key>,
    public: Option<Key>,
    policy: claims::Policy,
    allow_anonymous: bool,
}

impl Verifier {
    /// Builds the verifier; a key that does not parse is an error naming the
    /// variable it came from.
    pub fn from_config(cfg: &Config) -> Result<Self, crate::config::ConfigError> {
        let hmac = cfg.jwt_secret.as_ref().map(|s| Key {
            key: DecodingKey::from_secret(s.as_bytes()),
            algorithms: vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
        });
        let public = match &cfg.jwt_public_key {
            None => None,
            Some(pk) => {
                let (var, pem) = match pk {
                    PublicKey::Pem(p) => ("JWT_PUBLIC_KEY", p.clone()),
                    PublicKey::File(path) => (
                        "JWT_PUBLIC_KEY_FILE",
                        std::fs::read_to_string(path).map_err(|e| crate::config::ConfigError {
                            var: "JWT_PUBLIC_KEY_FILE",
                            message: format!("cannot read {}: {e}", path.display()),
                        })?,
                    ),
                };
                let (key, algs) =
                    parse_public_pem(&pem).ok_or_else(|| crate::config::ConfigError {
                        var,
                        message: "not a PEM RSA, EC (P-256/P-384) or Ed25519 public key".into(),
                    })?;
                Some(Key {
                    key,
                    algorithms: algs,
                })
            }
        };
        Ok(Self {
            hmac,
            public,
            policy: claims::Policy {
                leeway: cfg.jwt_leeway_secs,
                issuers: cfg.jwt_issuers.clone(),
                audience: cfg.jwt_audience.clone(),
            },
            allow_anonymous: cfg.allow_anonymous,
        })
    }

    /// Whether any key is configured (without one only anonymous works).
    pub fn has_keys(&self) -> bool {
        self.hmac.is_some() || self.public.is_some()
    }

    /// Checks `token` (or its absence) against the wall clock and returns
    /// the listener's identity.
    pub fn verify(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.verify_at(token, now)
    }

    /// [`Verifier::verify`] at unix second `now`.
    pub fn verify_at(&self, token: Option<&str>, now: u64) -> Result<Identity, AuthError> {
        let Some(token) = token else {
            return if self.allow_anonymous {
                Ok(Identity {
                    app: DEFAULT_APP.into(),
                    user: None,
                    exp: None,
                })
            } else {
                Err(AuthError {
                    problem: Problem::MissingToken,
                    detail: "No token provided".into(),
                })
            };
        };
        let malformed = || invalid("Invalid JWT token: malformed header");
        let mut parts = token.split('.');
        let (Some(head), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("Invalid JWT token: not three dot-separated parts"));
        };
        let header = jsonwebtoken::decode_header(token).map_err(|_| malformed())?;
        claims::check_crit(head)?;
        // Each key lists only its own family's algorithms, so an HMAC token
        // is never checked against a public key.
        let key = [&self.hmac, &self.public]
            .into_iter()
            .flatten()
            .find(|k| k.algorithms.contains(&header.alg))
            .ok_or_else(|| {
                invalid(format!(
                    "Invalid JWT token: algorithm {:?} is not accepted",
                    header.alg
                ))
            })?;
        let message = &token[..head.len() + 1 + payload.len()];
        match jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key.key, header.alg) {
            Ok(true) => {}
            Ok(false) => return Err(invalid("Invalid JWT token: bad signature")),
            Err(_) => return Err(invalid("Invalid JWT token")),
        }
        // The claims are parsed here rather than by `jsonwebtoken::decode`,
        // whose own claim parsing fails on some wrong types before the
        // claims check could name them.
        let claims: Value = claims::b64url_decode(payload)
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(|| invalid("Invalid JWT token: the claims are not base64url JSON"))?;
        self.check_claims(&claims, now)
    }

    /// The claims policy alone, on claims whose signature was verified (or
    /// needs none, as in the fuzz target): value types, `exp` (required;
    /// valid while `now < exp + JWT_LEEWAY_SECONDS`), `nbf`, `aud`
    /// (`JWT_AUDIENCE`), `iss` (`JWT_ISSUER`; none = app `default`) and the
    /// user id (`sub`, else `userId`). `now` is in unix seconds.
    pub fn check_claims(&self, claims: &Value, now: u64) -> Result<Identity, AuthError> {
        claims::check(claims, &self.policy, now)
    }
}

/// Tries each public-key kind in turn; returns the key and its algorithms.
fn parse_public_pem(pem: &str) -> Option<(DecodingKey, Vec<Algorithm>)> {
    use Algorithm::*;
    let b = pem.as_bytes();
    if let Ok(k) = DecodingKey::from_rsa_pem(b) {
        return Some((k, vec![RS256, RS384, RS512, PS256, PS384, PS512]));
    }
    if let Ok(k) = DecodingKey::from_ed_pem(b) {
        return Some((k, vec![EdDSA]));
    }
    if let Ok(k) = DecodingKey::from_ec_pem(b) {
        // The curve decides which of the two verifies; the other fails the check.
        return Some((k, vec![ES256, ES384]));
    }
    None
}
