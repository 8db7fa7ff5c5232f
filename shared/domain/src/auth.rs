//! Who is calling the CRM API: `Authorization: Bearer <JWT>`, HS256 with
//! `JWT_SECRET`, algorithm pinned (a token announcing `none`, RS256 or HS512
//! is refused before its signature is looked at), `exp` required, `nbf`
//! honoured when present, `aud` refused (nobody here claims one).
//!
//! Claims: `sub` (the user id, non-empty), `role` (`admin` | `member`),
//! `caps` (capabilities, default empty). A passing token becomes a
//! [`Principal`]; its fields are private and [`JwtVerifier::verify_bearer`]
//! is its only constructor, so a flow holding one knows the caller was
//! authenticated.
//!
//! Access rules (applied by the repositories, one place each):
//! - admins read and change every record;
//! - members change only records whose `owner_id` is their `sub`, and read
//!   those plus unowned ones (leads a webhook created, not yet assigned);
//! - a record outside those rules answers 404, never 403, so ids cannot be probed.

use crate::secret::Secret;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

/// The one algorithm accepted.
const ALGORITHM: Algorithm = Algorithm::HS256;
/// Clock skew tolerated on `exp` / `nbf`, in seconds.
const LEEWAY_SECONDS: u64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Member,
}

/// An authenticated caller. Only [`JwtVerifier::verify_bearer`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    user_id: String,
    role: Role,
    caps: Vec<String>,
}

impl Principal {
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    pub fn has_cap(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c == cap)
    }

    /// How this caller appears in history, activities and outbound events.
    pub fn actor(&self) -> String {
        format!("user:{}", self.user_id)
    }

    /// The owner filter SQL applies: `None` for an admin (every record),
    /// else the caller's id (members: own records, plus unowned ones for reads).
    pub fn owner_scope(&self) -> Option<&str> {
        (!self.is_admin()).then_some(self.user_id.as_str())
    }

    /// Whether this caller may change a record owned by `owner`.
    pub fn may_change(&self, owner: Option<&str>) -> bool {
        self.is_admin() || owner == Some(self.user_id.as_str())
    }

    /// Whether this caller may read a record owned by `owner` (own or unowned for members).
    pub fn may_read(&self, owner: Option<&str>) -> bool {
        self.is_admin() || owner.is_none() || owner == Some(self.user_id.as_str())
    }
}

/// Why a bearer token was refused. Callers learn only these three things.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Authorization: Bearer token required")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("invalid token")]
    Invalid,
}

/// The claims this API reads (and `mint` writes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    #[serde(default)]
    pub caps: Vec<String>,
    /// Seconds since the Unix epoch.
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
}

/// Verifies bearer tokens; built once per cold start.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtVerifier(HS256, ***)")
    }
}

impl JwtVerifier {
    pub fn new(secret: &Secret) -> Self {
        let mut validation = Validation::new(ALGORITHM);
        validation.algorithms = vec![ALGORITHM];
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        Self {
            key: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
        }
    }

    /// Checks an `Authorization` header value (`Bearer <token>`, scheme case-insensitive).
    pub fn verify_bearer(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let header = authorization.map(str::trim).unwrap_or("");
        if header.is_empty() {
            return Err(AuthError::Missing);
        }
        let (scheme, token) = header.split_once(' ').ok_or(AuthError::Missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Missing);
        }
        self.verify(token.trim())
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid,
            },
        )?;
        let claims = data.claims;
        let sub = claims.sub.trim();
        if sub.is_empty() || sub.len() > 200 || sub.chars().any(char::is_control) {
            return Err(AuthError::Invalid);
        }
        Ok(Principal {
            user_id: sub.to_string(),
            role: claims.role,
            caps: claims.caps,
        })
    }
}

/// Signs claims with HS256 (development tokens, tests).
pub fn mint(secret: &Secret, claims: &Claims) -> String {
    jsonwebtoken::encode(
        &Header::new(ALGORITHM),
        claims,
        &EncodingKey::from_secret(secret.expose().as_bytes()),
    )
    .expect("HS256 signing with an in-memory key cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
    use hmac::{Hmac, KeyInit, Mac};

    const SECRET: &str = "test-jwt-secret";
    /// `{"typ":"JWT","alg":"HS256"}` . `{"sub":"user-1","role":"member","caps":["can_use_crm"],"exp":4102444800}`
    /// signed with `test-jwt-secret` (generated once with Python's hmac module; exp is 2100-01-01).
    const MEMBER_2100: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEiLCJyb2xlIjoibWVtYmVyIiwiY2FwcyI6WyJjYW5fdXNlX2NybSJdLCJleHAiOjQxMDI0NDQ4MDB9.PPalGN0DydhSXUlnUDs9A06FIs7lHrDHQdP86l66e_g";

    fn verifier() -> JwtVerifier {
        JwtVerifier::new(&Secret::new(SECRET).unwrap())
    }

    /// A token with any header and claims, HMAC-signed with `key` under SHA-256.
    fn forge(header: &str, claims: &str, key: &[u8]) -> String {
        let signing_input = format!("{}.{}", B64.encode(header), B64.encode(claims));
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        mac.update(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            B64.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn pinned_token_verifies_to_its_principal() {
        let p = verifier()
            .verify_bearer(Some(&format!("Bearer {MEMBER_2100}")))
            .unwrap();
        assert_eq!(p.user_id(), "user-1");
        assert_eq!(p.role(), Role::Member);
        assert!(p.has_cap("can_use_crm"));
        assert_eq!(p.actor(), "user:user-1");
    }

    #[test]
    fn minting_reproduces_the_pinned_token() {
        let claims = Claims {
            sub: "user-1".into(),
            role: Role::Member,
            caps: vec!["can_use_crm".into()],
            exp: 4_102_444_800,
            iat: None,
        };
        assert_eq!(mint(&Secret::new(SECRET).unwrap(), &claims), MEMBER_2100);
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_required() {
        let v = verifier();
        assert!(
            v.verify_bearer(Some(&format!("bearer {MEMBER_2100}")))
                .is_ok()
        );
        assert_eq!(v.verify_bearer(None), Err(AuthError::Missing));
        assert_eq!(v.verify_bearer(Some("")), Err(AuthError::Missing));
        assert_eq!(v.verify_bearer(Some(MEMBER_2100)), Err(AuthError::Missing));
        assert_eq!(
            v.verify_bearer(Some(&format!("Basic {MEMBER_2100}"))),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn expired_token_is_refused_as_expired() {
        let t = forge(
            r#"{"alg":"HS256","typ":"JWT"}"#,
            r#"{"sub":"user-1","role":"member","exp":1000000000}"#,
            SECRET.as_bytes(),
        );
        assert_eq!(verifier().verify(&t), Err(AuthError::Expired));
    }

    #[test]
    fn token_without_exp_is_refused() {
        let t = forge(
            r#"{"alg":"HS256","typ":"JWT"}"#,
            r#"{"sub":"user-1","role":"member"}"#,
            SECRET.as_bytes(),
        );
        assert_eq!(verifier().verify(&t), Err(AuthError::Invalid));
    }

    #[test]
    fn other_algorithms_are_refused_even_with_the_right_key() {
        let claims = r#"{"sub":"user-1","role":"admin","exp":4102444800}"#;
        // HS512 signed with the right secret.
        let signing_input = format!(
            "{}.{}",
            B64.encode(r#"{"alg":"HS512","typ":"JWT"}"#),
            B64.encode(claims)
        );
        let mut mac = Hmac::<sha2::Sha512>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(signing_input.as_bytes());
        let hs512 = format!(
            "{signing_input}.{}",
            B64.encode(mac.finalize().into_bytes())
        );
        assert_eq!(verifier().verify(&hs512), Err(AuthError::Invalid));
        // RS256 header over an HMAC signature (the classic key-confusion attempt).
        let rs256 = forge(r#"{"alg":"RS256","typ":"JWT"}"#, claims, SECRET.as_bytes());
        assert_eq!(verifier().verify(&rs256), Err(AuthError::Invalid));
        // alg none, with and without a signature part.
        let none_header = B64.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let body = B64.encode(claims);
        assert_eq!(
            verifier().verify(&format!("{none_header}.{body}.")),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            verifier().verify(&format!("{none_header}.{body}")),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn bad_signature_and_wrong_secret_are_refused() {
        let mut tampered = MEMBER_2100.to_string();
        tampered.pop();
        tampered.push(if MEMBER_2100.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(verifier().verify(&tampered), Err(AuthError::Invalid));
        let other = JwtVerifier::new(&Secret::new("another-secret").unwrap());
        assert_eq!(other.verify(MEMBER_2100), Err(AuthError::Invalid));
        // Claims swapped for an admin's under the original signature.
        let parts: Vec<&str> = MEMBER_2100.split('.').collect();
        let admin = B64.encode(r#"{"sub":"user-1","role":"admin","exp":4102444800}"#);
        let swapped = format!("{}.{admin}.{}", parts[0], parts[2]);
        assert_eq!(verifier().verify(&swapped), Err(AuthError::Invalid));
        assert_eq!(verifier().verify("not.a.jwt"), Err(AuthError::Invalid));
    }

    #[test]
    fn unknown_role_empty_sub_and_audience_are_refused() {
        for claims in [
            r#"{"sub":"user-1","role":"owner","exp":4102444800}"#,
            r#"{"sub":"user-1","exp":4102444800}"#,
            r#"{"sub":"  ","role":"admin","exp":4102444800}"#,
            r#"{"role":"admin","exp":4102444800}"#,
            r#"{"sub":"user-1","role":"admin","exp":4102444800,"aud":"elsewhere"}"#,
            r#"{"sub":"user-1","role":"admin","exp":4102444800,"nbf":4102444000}"#,
        ] {
            let t = forge(r#"{"alg":"HS256","typ":"JWT"}"#, claims, SECRET.as_bytes());
            assert_eq!(verifier().verify(&t), Err(AuthError::Invalid), "{claims}");
        }
    }

    #[test]
    fn members_change_their_own_and_read_unowned_admins_everything() {
        let t = forge(
            r#"{"alg":"HS256","typ":"JWT"}"#,
            r#"{"sub":"u1","role":"member","exp":4102444800}"#,
            SECRET.as_bytes(),
        );
        let member = verifier().verify(&t).unwrap();
        assert!(member.may_change(Some("u1")));
        assert!(!member.may_change(Some("u2")));
        assert!(!member.may_change(None));
        assert!(member.may_read(None));
        assert!(!member.may_read(Some("u2")));
        assert!(member.caps.is_empty());
        assert_eq!(member.owner_scope(), Some("u1"));
        let t = forge(
            r#"{"alg":"HS256","typ":"JWT"}"#,
            r#"{"sub":"a1","role":"admin","exp":4102444800}"#,
            SECRET.as_bytes(),
        );
        let admin = verifier().verify(&t).unwrap();
        assert!(admin.may_change(Some("u2")) && admin.may_change(None));
        assert_eq!(admin.owner_scope(), None);
    }
}
