//! JWT verification (SPEC §2), pure: token in, identity or refusal out.
//!
//! The configured keys decide which algorithms are accepted: `JWT_SECRET`
//! allows HS256/384/512; a public key allows only its own family (RSA →
//! RS*/PS*, EC → ES256/ES384, Ed25519 → EdDSA). A token whose `alg` is not in
//! the configured families is refused before any signature check, so an HMAC
//! token can never be checked against a public key and `alg: none` never
//! parses.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::config::{Config, PublicKey};

use super::response::Problem;

/// The application of a token without `iss`.
pub const DEFAULT_APP: &str = "default";

/// Who a listener is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub app: String,
    /// `None` for anonymous listeners.
    pub user: Option<String>,
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
    validation: Validation,
}

/// Checks tokens against the configured keys and claims policy.
pub struct Verifier {
    hmac: Option<Key>,
    public: Option<Key>,
    issuers: Vec<String>,
    allow_anonymous: bool,
}

impl Verifier {
    /// Builds the verifier; a key that does not parse is an error naming the
    /// variable it came from.
    pub fn from_config(cfg: &Config) -> Result<Self, crate::config::ConfigError> {
        let base = |algs: &[Algorithm]| {
            let mut v = Validation::new(algs[0]);
            v.algorithms = algs.to_vec();
            v.leeway = cfg.jwt_leeway_secs;
            v.validate_nbf = true;
            v.set_required_spec_claims(&["exp"]);
            if cfg.jwt_audience.is_empty() {
                v.validate_aud = false;
            } else {
                v.set_audience(&cfg.jwt_audience);
                v.required_spec_claims.insert("aud".into());
            }
            v
        };
        let hmac = cfg.jwt_secret.as_ref().map(|s| Key {
            key: DecodingKey::from_secret(s.as_bytes()),
            validation: base(&[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]),
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
                    validation: base(&algs),
                })
            }
        };
        Ok(Self {
            hmac,
            public,
            issuers: cfg.jwt_issuers.clone(),
            allow_anonymous: cfg.allow_anonymous,
        })
    }

    /// Whether any key is configured (without one only anonymous works).
    pub fn has_keys(&self) -> bool {
        self.hmac.is_some() || self.public.is_some()
    }

    /// Checks `token` (or its absence) and returns the listener's identity.
    pub fn verify(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        let Some(token) = token else {
            return if self.allow_anonymous {
                Ok(Identity {
                    app: DEFAULT_APP.into(),
                    user: None,
                })
            } else {
                Err(AuthError {
                    problem: Problem::MissingToken,
                    detail: "No token provided".into(),
                })
            };
        };
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("Invalid JWT token: malformed header"))?;
        let key = [&self.hmac, &self.public]
            .into_iter()
            .flatten()
            .find(|k| k.validation.algorithms.contains(&header.alg))
            .ok_or_else(|| {
                invalid(format!(
                    "Invalid JWT token: algorithm {:?} is not accepted",
                    header.alg
                ))
            })?;
        let data =
            jsonwebtoken::decode::<Value>(token, &key.key, &key.validation).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::ExpiredSignature => AuthError {
                        problem: Problem::ExpiredJwt,
                        detail: "JWT token has expired".into(),
                    },
                    K::InvalidSignature => invalid("Invalid JWT token: bad signature"),
                    K::ImmatureSignature => invalid("Invalid JWT token: not valid yet (nbf)"),
                    K::InvalidAudience => invalid("Invalid JWT token: audience not accepted"),
                    K::MissingRequiredClaim(c) => {
                        invalid(format!("Invalid JWT token: missing `{c}`"))
                    }
                    _ => invalid("Invalid JWT token"),
                }
            })?;
        let claims = data.claims;
        let app = match claims.get("iss") {
            None | Some(Value::Null) => DEFAULT_APP.to_string(),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => {
                return Err(invalid(
                    "Invalid JWT token: `iss` must be a non-empty string",
                ))
            }
        };
        if !self.issuers.is_empty() && !self.issuers.contains(&app) {
            return Err(AuthError {
                problem: Problem::WrongIssuer,
                detail: format!("issuer {app:?} is not accepted"),
            });
        }
        let user = ["sub", "userId"]
            .iter()
            .find_map(|c| match claims.get(*c) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            })
            .ok_or_else(|| invalid("Invalid JWT token: no user id (`sub` or `userId`)"))?;
        Ok(Identity {
            app,
            user: Some(user),
        })
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

#[cfg(test)]
mod tests {
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
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let t = hs(
                alg,
                "s3cret",
                json!({"sub":"u1","iss":"shop","exp":now()+60}),
            );
            assert_eq!(
                v.verify(Some(&t)).unwrap(),
                Identity {
                    app: "shop".into(),
                    user: Some("u1".into())
                }
            );
        }
        let t = hs(
            Algorithm::HS256,
            "s3cret",
            json!({"userId":"u2","exp":now()+60}),
        );
        assert_eq!(
            v.verify(Some(&t)).unwrap(),
            Identity {
                app: "default".into(),
                user: Some("u2".into())
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
                user: None
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
}
