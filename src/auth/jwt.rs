//! JSON Web Tokens: HS256, RS256 and ES256, keys from files, several keys by `kid` so that
//! keys can be rotated, `exp` required and `nbf` honoured with a small leeway, optional
//! `aud` and `iss`, and a configurable claim as the userID (default `sub`).
//!
//! Each key is pinned to one algorithm, and a token is verified only with the algorithm of
//! the key its `kid` names: `alg: none` cannot even be parsed, and algorithm confusion (an
//! HS256 token signed with an RSA public key as the secret) fails the pinning check.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};

use super::{AuthError, AuthFuture, Authenticator, Identity, RejectReason};
use crate::config::{Config, ConfigError};

/// The `kid` a token without one is checked against.
pub const DEFAULT_KID: &str = "default";

struct Key {
    algorithm: Algorithm,
    decoding: DecodingKey,
    validation: Validation,
}

/// Verifies signed tokens against a set of keys.
pub struct JwtAuthenticator {
    keys: HashMap<String, Key>,
    user_claim: String,
    leeway: Duration,
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .field("user_claim", &self.user_claim)
            .finish()
    }
}

/// Parses `KID=ALG:PATH` (the `KID=` part optional, meaning [`DEFAULT_KID`]).
fn parse_key_spec(spec: &str) -> Result<(String, Algorithm, String), String> {
    let (kid, rest) = match spec.split_once('=') {
        Some((kid, rest)) if !kid.is_empty() => (kid.to_owned(), rest),
        _ => (DEFAULT_KID.to_owned(), spec),
    };
    let (alg, path) = rest
        .split_once(':')
        .ok_or_else(|| format!("{spec:?}: expected KID=ALG:PATH"))?;
    let algorithm = match alg {
        "HS256" => Algorithm::HS256,
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        other => {
            return Err(format!(
                "{other}: supported algorithms are HS256, RS256, ES256"
            ))
        }
    };
    Ok((kid, algorithm, path.to_owned()))
}

impl JwtAuthenticator {
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        if config.jwt_keys.is_empty() {
            return Err(ConfigError::Missing("--jwt-key (with --auth jwt)"));
        }
        let mut keys = HashMap::new();
        for spec in &config.jwt_keys {
            let bad = |reason: String| ConfigError::File {
                path: spec.clone(),
                reason,
            };
            let (kid, algorithm, path) = parse_key_spec(spec).map_err(bad)?;
            let bytes = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
            let decoding = match algorithm {
                Algorithm::HS256 => {
                    let secret = bytes.trim_ascii_end();
                    if secret.len() < 32 {
                        return Err(bad("an HS256 secret needs at least 32 bytes".into()));
                    }
                    DecodingKey::from_secret(secret)
                }
                Algorithm::RS256 => {
                    DecodingKey::from_rsa_pem(&bytes).map_err(|e| bad(e.to_string()))?
                }
                _ => DecodingKey::from_ec_pem(&bytes).map_err(|e| bad(e.to_string()))?,
            };
            let mut validation = Validation::new(algorithm);
            validation.leeway = config.jwt_leeway.as_secs();
            validation.validate_nbf = true;
            // A configured audience or issuer is required, not only compared when present:
            // a token minted for another service without `aud` must not pass.
            let mut required = vec!["exp"];
            match &config.jwt_audience {
                Some(audience) => {
                    validation.set_audience(&[audience]);
                    required.push("aud");
                }
                None => validation.validate_aud = false,
            }
            if let Some(issuer) = &config.jwt_issuer {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            validation.set_required_spec_claims(&required);
            // Two keys under one kid: which one verifies a token would be a guess.
            if keys.contains_key(&kid) {
                return Err(bad(format!("key id {kid:?} given twice")));
            }
            keys.insert(
                kid,
                Key {
                    algorithm,
                    decoding,
                    validation,
                },
            );
        }
        Ok(Self {
            keys,
            user_claim: config.jwt_user_claim.clone(),
            leeway: config.jwt_leeway,
        })
    }

    /// Verifies a token synchronously (signature checks are CPU work of a few µs).
    pub fn verify(&self, token: &str) -> Result<Identity, RejectReason> {
        let header = decode_header(token).map_err(|_| RejectReason::Malformed)?;
        let kid = header.kid.as_deref().unwrap_or(DEFAULT_KID);
        let key = self.keys.get(kid).ok_or(RejectReason::UnknownKey)?;
        if header.alg != key.algorithm {
            return Err(RejectReason::AlgorithmMismatch);
        }
        let claims = decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key.decoding,
            &key.validation,
        )
        .map_err(|error| match error.kind() {
            ErrorKind::InvalidSignature => RejectReason::BadSignature,
            ErrorKind::ExpiredSignature => RejectReason::Expired,
            ErrorKind::ImmatureSignature => RejectReason::NotYetValid,
            ErrorKind::InvalidAudience
            | ErrorKind::InvalidIssuer
            | ErrorKind::InvalidSubject
            | ErrorKind::MissingRequiredClaim(_)
            | ErrorKind::InvalidClaimFormat(_) => RejectReason::Claims,
            ErrorKind::InvalidAlgorithm => RejectReason::AlgorithmMismatch,
            _ => RejectReason::Malformed,
        })?
        .claims;
        let user_id = claims
            .get(&self.user_claim)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
            .ok_or(RejectReason::Claims)?
            .to_owned();
        let expires_at = claims
            .get("exp")
            .and_then(|v| v.as_u64())
            // An `exp` too far ahead to be a time (a "never expires" token minted with
            // i64::MAX) is no expiry at all, not an overflow.
            .and_then(|exp| Duration::from_secs(exp).checked_add(self.leeway))
            .and_then(|after_epoch| UNIX_EPOCH.checked_add(after_epoch));
        Ok(Identity {
            user_id,
            expires_at,
        })
    }
}

impl Authenticator for JwtAuthenticator {
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthFuture<'a> {
        Box::pin(std::future::ready(
            self.verify(token).map_err(AuthError::Rejected),
        ))
    }
}

/// Seconds since the epoch, for tests and tools that mint tokens.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use jsonwebtoken::{encode, EncodingKey, Header};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn authenticator(extra: &[&str]) -> JwtAuthenticator {
        let dir = std::env::temp_dir().join(format!("pushgate-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hs.key");
        std::fs::write(&path, [SECRET, b"\n"].concat()).unwrap();
        let spec = format!("k1=HS256:{}", path.display());
        let mut args = vec!["pushgate", "--auth", "jwt", "--jwt-key", &spec];
        args.extend_from_slice(extra);
        JwtAuthenticator::from_config(&Config::parse_from(args)).unwrap()
    }

    fn token(claims: serde_json::Value, kid: Option<&str>, alg: Algorithm) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        encode(&header, &claims, &EncodingKey::from_secret(SECRET)).unwrap()
    }

    /// Verifies alice's HS256 token expiring at `exp`.
    fn verify_alice(auth: &JwtAuthenticator, exp: u64) -> Identity {
        let claims = serde_json::json!({"sub": "alice", "exp": exp});
        let identity = auth
            .verify(&token(claims, Some("k1"), Algorithm::HS256))
            .unwrap();
        assert_eq!(identity.user_id, "alice");
        identity
    }

    #[test]
    fn a_valid_token_gives_its_subject_and_expiry() {
        let identity = verify_alice(&authenticator(&[]), unix_now() + 600);
        assert!(identity.expires_at.unwrap() > SystemTime::now());
    }

    #[test]
    fn rejections_are_named() {
        let auth = authenticator(&["--jwt-audience", "alerts"]);
        let now = unix_now();
        let claims = |extra: serde_json::Value| {
            let mut c = serde_json::json!({"sub": "alice", "exp": now + 600, "aud": "alerts"});
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            c
        };
        let check = |token: String, reason| assert_eq!(auth.verify(&token), Err(reason));
        check(
            token(
                claims(serde_json::json!({"exp": now - 3600})),
                Some("k1"),
                Algorithm::HS256,
            ),
            RejectReason::Expired,
        );
        check(
            token(
                claims(serde_json::json!({"nbf": now + 3600})),
                Some("k1"),
                Algorithm::HS256,
            ),
            RejectReason::NotYetValid,
        );
        check(
            token(
                claims(serde_json::json!({"aud": "other"})),
                Some("k1"),
                Algorithm::HS256,
            ),
            RejectReason::Claims,
        );
        check(
            token(claims(serde_json::json!({})), Some("k9"), Algorithm::HS256),
            RejectReason::UnknownKey,
        );
        check(
            token(claims(serde_json::json!({})), Some("k1"), Algorithm::HS384),
            RejectReason::AlgorithmMismatch,
        );
        // Another first character of the signature: six bits of its first byte change.
        // (Replacing the last character was a no-op whenever it already was the
        // replacement: one token in 16, since it carries 4 bits and 2 of padding.)
        let signed = token(claims(serde_json::json!({})), Some("k1"), Algorithm::HS256);
        let (message, signature) = signed.rsplit_once('.').unwrap();
        let first = if signature.starts_with('A') { 'B' } else { 'A' };
        let forged = format!("{message}.{first}{}", &signature[1..]);
        assert_ne!(forged, signed);
        check(forged, RejectReason::BadSignature);
        check("not.a.token".into(), RejectReason::Malformed);
        // alg "none": header {"alg":"none","kid":"k1"}, any payload, empty signature.
        check(
            "eyJhbGciOiJub25lIiwia2lkIjoiazEifQ.eyJzdWIiOiJhbGljZSJ9.".into(),
            RejectReason::Malformed,
        );
        check(
            token(
                serde_json::json!({"sub": "alice", "aud": "alerts"}),
                Some("k1"),
                Algorithm::HS256,
            ),
            RejectReason::Claims,
        );
    }

    /// A configured audience and issuer must be present in the token, not only match
    /// when they are.
    #[test]
    fn a_configured_audience_or_issuer_is_required() {
        let auth = authenticator(&["--jwt-audience", "alerts", "--jwt-issuer", "https://idp"]);
        let exp = unix_now() + 600;
        let verify = |claims: serde_json::Value| {
            auth.verify(&token(claims, Some("k1"), Algorithm::HS256))
                .map(|identity| identity.user_id)
        };
        assert_eq!(
            verify(
                serde_json::json!({"sub": "a", "exp": exp, "aud": "alerts", "iss": "https://idp"})
            ),
            Ok("a".to_owned())
        );
        for claims in [
            serde_json::json!({"sub": "a", "exp": exp}),
            serde_json::json!({"sub": "a", "exp": exp, "iss": "https://idp"}),
            serde_json::json!({"sub": "a", "exp": exp, "aud": "alerts"}),
            serde_json::json!({"sub": "a", "exp": exp, "aud": null, "iss": null}),
            serde_json::json!({"sub": "a", "exp": exp, "aud": "alerts", "iss": null}),
        ] {
            assert_eq!(
                verify(claims.clone()),
                Err(RejectReason::Claims),
                "{claims}"
            );
        }
    }

    /// An `exp` past what a clock can hold verifies (it is in the future) with no expiry
    /// instead of overflowing.
    #[test]
    fn an_exp_beyond_any_clock_is_no_expiry() {
        let auth = authenticator(&[]);
        for exp in [i64::MAX as u64, i64::MAX as u64 - 29, u64::MAX] {
            let identity = verify_alice(&auth, exp);
            assert!(identity.expires_at.is_none_or(|at| at > SystemTime::now()));
        }
    }

    #[test]
    fn a_key_id_given_twice_is_refused() {
        let dir = std::env::temp_dir().join(format!("pushgate-jwt-dup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hs.key");
        std::fs::write(&path, SECRET).unwrap();
        let spec = format!("a=HS256:{}", path.display());
        let config = Config::parse_from([
            "pushgate",
            "--auth",
            "jwt",
            "--jwt-key",
            &spec,
            "--jwt-key",
            &spec,
        ]);
        let error = JwtAuthenticator::from_config(&config).unwrap_err();
        assert!(
            error.to_string().contains(r#"key id "a" given twice"#),
            "{error}"
        );
    }

    #[test]
    fn key_specs() {
        assert_eq!(
            parse_key_spec("HS256:/k").unwrap(),
            (DEFAULT_KID.to_owned(), Algorithm::HS256, "/k".to_owned())
        );
        assert_eq!(parse_key_spec("a=ES256:/e").unwrap().0, "a");
        assert!(parse_key_spec("a=none:/k").is_err());
        assert!(parse_key_spec("/k").is_err());
    }
}
