//! Who is calling the CRM API: `Authorization: Bearer <JWT>`.
//!
//! Our own access tokens (issued by the accounts function's sign-in, or by
//! the development tool `mint-token`) are HS256 with `JWT_SECRET`, and the
//! verifier checks, in this order:
//! - the algorithm is pinned: a token announcing `none`, RS256 or HS512 is
//!   refused before its signature is looked at (RS256/ES256 go to the
//!   external identity provider's verifier, [`external`], when one is set up);
//! - `iss` is [`ISSUER`] and `aud` is [`AUDIENCE`] (both required);
//! - `exp` and `iat` are required, `exp` passed → [`AuthError::Expired`];
//!   `nbf` is honoured when present; `iat` may not lie in the future;
//! - the lifetime `exp − iat` is at most the configured maximum
//!   ([`DEFAULT_MAX_LIFETIME_SECONDS`], 15 minutes, unless lowered), so a
//!   leaked token is useful for minutes, not days.
//!
//! All clock checks allow [`LEEWAY_SECONDS`] of skew.
//!
//! Claims: `sub` (the user id, non-empty), `role` (`admin` | `member`),
//! `caps` (capabilities from [`CAPABILITIES`], default empty). A passing
//! token becomes a [`Principal`]; its fields are private and only this
//! module (and the accounts repository, for an external identity mapped to
//! a `users` row) constructs one, so a flow holding one knows the caller was
//! authenticated.
//!
//! Access rules (applied by the repositories, one place each):
//! - admins read and change every record;
//! - members change only records whose `owner_id` is their `sub`, and read
//!   those plus unowned ones (leads a webhook created, not yet assigned);
//! - a record outside those rules answers 404, never 403, so ids cannot be probed.

pub mod external;

pub use external::{ExternalIdentity, ExternalPolicy, ExternalRefusal};

use crate::secret::Secret;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The one algorithm accepted for our own tokens.
const ALGORITHM: Algorithm = Algorithm::HS256;
/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_SECONDS: i64 = 30;
/// `iss` of every token this service issues (and the only one the HS256 verifier accepts).
pub const ISSUER: &str = "crm-accounts";
/// `aud` of every token this service issues: the CRM's own API.
pub const AUDIENCE: &str = "crm-api";
/// Longest accepted lifetime (`exp − iat`) of our own tokens, unless
/// `JWT_MAX_LIFETIME_SECONDS` lowers it. Sign-in issues tokens this long.
pub const DEFAULT_MAX_LIFETIME_SECONDS: i64 = 15 * 60;
/// The capabilities a token may carry (validated when an admin sets them).
/// `can_use_crm`: the campaigns module (segments, templates, campaigns);
/// `campaigns:send`: start a campaign's real send.
pub const CAPABILITIES: &[&str] = &["can_use_crm", "campaigns:send"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

/// An authenticated caller. Only this module's verifiers and the accounts
/// repository (a verified external identity mapped to its `users` row) make one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    user_id: String,
    role: Role,
    caps: Vec<String>,
    session_id: Option<String>,
}

impl Principal {
    /// Crate-private: the proof of authentication is that only verifiers call this.
    pub(crate) fn new(user_id: String, role: Role, caps: Vec<String>) -> Self {
        Self {
            user_id,
            role,
            caps,
            session_id: None,
        }
    }

    /// The sign-in session this caller's token belongs to (our own tokens from sign-in).
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn caps(&self) -> &[String] {
        &self.caps
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

/// The claims of our own access tokens (what [`mint`] writes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub role: Role,
    #[serde(default)]
    pub caps: Vec<String>,
    /// Seconds since the Unix epoch.
    pub iat: i64,
    /// Seconds since the Unix epoch.
    pub exp: i64,
    /// The sign-in session the token was issued for (sign-in sets it; lets
    /// a password change keep this session and end the others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

impl Claims {
    /// An access token's claims for `sub`: our issuer and audience, issued
    /// at `issued_at`, expiring `lifetime_seconds` later.
    pub fn access(
        sub: impl Into<String>,
        role: Role,
        caps: Vec<String>,
        issued_at: i64,
        lifetime_seconds: i64,
    ) -> Self {
        Self {
            iss: ISSUER.to_string(),
            aud: AUDIENCE.to_string(),
            sub: sub.into(),
            role,
            caps,
            iat: issued_at,
            exp: issued_at + lifetime_seconds,
            sid: None,
        }
    }

    /// [`Claims::access`] issued now with the default (maximum) lifetime:
    /// what tests and development tools mint.
    pub fn issued_now(sub: impl Into<String>, role: Role, caps: Vec<String>) -> Self {
        Self::access(sub, role, caps, now(), DEFAULT_MAX_LIFETIME_SECONDS)
    }
}

/// What the decoder reads: `iss` and `aud` are checked by jsonwebtoken's
/// validation, the rest here (a missing `iat` or `exp` fails deserialisation).
#[derive(Deserialize)]
struct Incoming {
    sub: String,
    role: Role,
    #[serde(default)]
    caps: Vec<String>,
    iat: i64,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    sid: Option<String>,
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The clock checks shared by our tokens and an external provider's:
/// expiry (→ [`AuthError::Expired`]), `nbf`, `iat` not in the future, lifetime.
pub(crate) fn check_times(
    iat: i64,
    exp: i64,
    nbf: Option<i64>,
    max_lifetime: i64,
    now: i64,
) -> Result<(), AuthError> {
    if exp + LEEWAY_SECONDS < now {
        return Err(AuthError::Expired);
    }
    if nbf.is_some_and(|nbf| nbf > now + LEEWAY_SECONDS) || iat > now + LEEWAY_SECONDS {
        return Err(AuthError::Invalid);
    }
    if exp <= iat || exp - iat > max_lifetime {
        return Err(AuthError::Invalid);
    }
    Ok(())
}

/// A user id as a token carries it: non-empty, bounded, no control characters.
pub(crate) fn valid_subject(sub: &str) -> Option<&str> {
    let sub = sub.trim();
    (!sub.is_empty() && sub.len() <= 200 && !sub.chars().any(char::is_control)).then_some(sub)
}

/// Verifies our own bearer tokens; built once per cold start.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    max_lifetime: i64,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "JwtVerifier(HS256, iss={ISSUER}, aud={AUDIENCE}, max_lifetime={}s, ***)",
            self.max_lifetime
        )
    }
}

impl JwtVerifier {
    /// A verifier with the default maximum lifetime (15 minutes).
    pub fn new(secret: &Secret) -> Self {
        Self::with_max_lifetime(secret, DEFAULT_MAX_LIFETIME_SECONDS)
    }

    /// A verifier refusing tokens whose `exp − iat` exceeds `max_lifetime` seconds.
    pub fn with_max_lifetime(secret: &Secret, max_lifetime: i64) -> Self {
        let mut validation = Validation::new(ALGORITHM);
        validation.algorithms = vec![ALGORITHM];
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        // Expiry, nbf, iat and lifetime are checked in `check_times` against one clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        Self {
            key: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
            max_lifetime,
        }
    }

    pub fn max_lifetime(&self) -> i64 {
        self.max_lifetime
    }

    /// Checks an `Authorization` header value (`Bearer <token>`, scheme case-insensitive).
    pub fn verify_bearer(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        self.verify(bearer_token(authorization)?)
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_at(token, now())
    }

    /// [`JwtVerifier::verify`] with the clock at `now` (seconds since the epoch).
    pub fn verify_at(&self, token: &str, now: i64) -> Result<Principal, AuthError> {
        let claims = jsonwebtoken::decode::<Incoming>(token, &self.key, &self.validation)
            .map_err(|_| AuthError::Invalid)?
            .claims;
        check_times(claims.iat, claims.exp, claims.nbf, self.max_lifetime, now)?;
        let sub = valid_subject(&claims.sub).ok_or(AuthError::Invalid)?;
        let mut principal = Principal::new(sub.to_string(), claims.role, claims.caps);
        principal.session_id = claims.sid.filter(|s| valid_subject(s).is_some());
        Ok(principal)
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    let header = authorization.map(str::trim).unwrap_or("");
    if header.is_empty() {
        return Err(AuthError::Missing);
    }
    let (scheme, token) = header.split_once(' ').ok_or(AuthError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Missing);
    }
    Ok(token.trim())
}

/// Whether a token announces HS256 (ours) in its header; anything
/// unreadable counts as ours, so the HS256 verifier refuses it.
pub fn is_local_token(token: &str) -> bool {
    jsonwebtoken::decode_header(token).map_or(true, |h| h.alg == ALGORITHM)
}

/// Signs claims with HS256: the accounts function's sign-in, the
/// development tool `mint-token`, and tests.
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
    /// `{"typ":"JWT","alg":"HS256"}` . `{"iss":"crm-accounts","aud":"crm-api","sub":"user-1","role":"member","caps":["can_use_crm"],"iat":4102443900,"exp":4102444800}`
    /// signed with `test-jwt-secret` (generated once with Python's hmac
    /// module; issued 2099-12-31T23:45Z, expires 15 minutes later).
    const MEMBER_2100: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJjcm0tYWNjb3VudHMiLCJhdWQiOiJjcm0tYXBpIiwic3ViIjoidXNlci0xIiwicm9sZSI6Im1lbWJlciIsImNhcHMiOlsiY2FuX3VzZV9jcm0iXSwiaWF0Ijo0MTAyNDQzOTAwLCJleHAiOjQxMDI0NDQ4MDB9.YRVAB1WP7fg1-0mAW66ca_Lgf2z7EzW2MHcJxU1QXAc";
    /// A moment inside MEMBER_2100's lifetime.
    const IN_2100: i64 = 4_102_444_000;

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

    fn hs256(claims: &str) -> String {
        forge(r#"{"alg":"HS256","typ":"JWT"}"#, claims, SECRET.as_bytes())
    }

    /// `{"iss","aud","sub","role","iat","exp"}` valid at IN_2100, plus `extra` fields.
    fn claims_2100(extra: &str) -> String {
        format!(
            r#"{{"iss":"crm-accounts","aud":"crm-api","sub":"user-1","role":"member","iat":4102443900,"exp":4102444800{extra}}}"#
        )
    }

    #[test]
    fn pinned_token_verifies_to_its_principal() {
        let p = verifier()
            .verify_at(
                bearer_token(Some(&format!("Bearer {MEMBER_2100}"))).unwrap(),
                IN_2100,
            )
            .unwrap();
        assert_eq!(p.user_id(), "user-1");
        assert_eq!(p.role(), Role::Member);
        assert!(p.has_cap("can_use_crm"));
        assert_eq!(p.actor(), "user:user-1");
    }

    #[test]
    fn minting_reproduces_the_pinned_token() {
        let claims = Claims::access(
            "user-1",
            Role::Member,
            vec!["can_use_crm".into()],
            4_102_443_900,
            900,
        );
        assert_eq!(mint(&Secret::new(SECRET).unwrap(), &claims), MEMBER_2100);
    }

    #[test]
    fn a_token_issued_now_verifies_now() {
        let secret = Secret::new(SECRET).unwrap();
        let t = mint(&secret, &Claims::issued_now("u1", Role::Admin, vec![]));
        let p = verifier()
            .verify_bearer(Some(&format!("Bearer {t}")))
            .unwrap();
        assert!(p.is_admin());
        assert_eq!(p.user_id(), "u1");
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_required() {
        let v = verifier();
        let t = mint(
            &Secret::new(SECRET).unwrap(),
            &Claims::issued_now("u1", Role::Member, vec![]),
        );
        assert!(v.verify_bearer(Some(&format!("bearer {t}"))).is_ok());
        assert_eq!(v.verify_bearer(None), Err(AuthError::Missing));
        assert_eq!(v.verify_bearer(Some("")), Err(AuthError::Missing));
        assert_eq!(v.verify_bearer(Some(&t)), Err(AuthError::Missing));
        assert_eq!(
            v.verify_bearer(Some(&format!("Basic {t}"))),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn expired_token_is_refused_as_expired() {
        let t = hs256(&claims_2100(""));
        assert_eq!(
            verifier().verify_at(&t, 4_102_444_800 + LEEWAY_SECONDS + 1),
            Err(AuthError::Expired)
        );
        // Within the leeway it still passes.
        assert!(
            verifier()
                .verify_at(&t, 4_102_444_800 + LEEWAY_SECONDS)
                .is_ok()
        );
    }

    #[test]
    fn token_without_exp_or_iat_is_refused() {
        for claims in [
            r#"{"iss":"crm-accounts","aud":"crm-api","sub":"user-1","role":"member","iat":4102443900}"#,
            r#"{"iss":"crm-accounts","aud":"crm-api","sub":"user-1","role":"member","exp":4102444800}"#,
        ] {
            assert_eq!(
                verifier().verify_at(&hs256(claims), IN_2100),
                Err(AuthError::Invalid),
                "{claims}"
            );
        }
    }

    #[test]
    fn issuer_and_audience_are_required_and_must_be_ours() {
        for claims in [
            // No iss, no aud.
            r#"{"sub":"user-1","role":"member","iat":4102443900,"exp":4102444800}"#,
            r#"{"aud":"crm-api","sub":"user-1","role":"member","iat":4102443900,"exp":4102444800}"#,
            r#"{"iss":"crm-accounts","sub":"user-1","role":"member","iat":4102443900,"exp":4102444800}"#,
            // Someone else's.
            r#"{"iss":"https://idp.example.com","aud":"crm-api","sub":"user-1","role":"member","iat":4102443900,"exp":4102444800}"#,
            r#"{"iss":"crm-accounts","aud":"elsewhere","sub":"user-1","role":"member","iat":4102443900,"exp":4102444800}"#,
            r#"{"iss":"crm-accounts","aud":["elsewhere"],"sub":"user-1","role":"member","iat":4102443900,"exp":4102444800}"#,
        ] {
            assert_eq!(
                verifier().verify_at(&hs256(claims), IN_2100),
                Err(AuthError::Invalid),
                "{claims}"
            );
        }
    }

    #[test]
    fn lifetime_above_the_maximum_is_refused() {
        // 15 minutes and 1 second.
        let long = r#"{"iss":"crm-accounts","aud":"crm-api","sub":"user-1","role":"member","iat":4102443899,"exp":4102444800}"#;
        assert_eq!(
            verifier().verify_at(&hs256(long), IN_2100),
            Err(AuthError::Invalid)
        );
        // Exactly 15 minutes passes; a verifier configured for 10 refuses it.
        let t = hs256(&claims_2100(""));
        assert!(verifier().verify_at(&t, IN_2100).is_ok());
        let strict = JwtVerifier::with_max_lifetime(&Secret::new(SECRET).unwrap(), 600);
        assert_eq!(strict.verify_at(&t, IN_2100), Err(AuthError::Invalid));
        // exp before iat.
        let backwards = r#"{"iss":"crm-accounts","aud":"crm-api","sub":"user-1","role":"member","iat":4102444800,"exp":4102444700}"#;
        assert_eq!(
            verifier().verify_at(&hs256(backwards), 4_102_444_700),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn a_token_issued_in_the_future_is_refused() {
        // Valid 15-minute lifetime, but issued in 2099: it would otherwise
        // work from now until then.
        let t = hs256(&claims_2100(""));
        assert_eq!(verifier().verify(&t), Err(AuthError::Invalid));
        assert_eq!(
            verifier().verify_at(&t, 4_102_443_900 - LEEWAY_SECONDS - 1),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn nbf_in_the_future_is_refused() {
        let t = hs256(&claims_2100(r#","nbf":4102444700"#));
        assert_eq!(verifier().verify_at(&t, IN_2100), Err(AuthError::Invalid));
        assert!(verifier().verify_at(&t, 4_102_444_700).is_ok());
    }

    #[test]
    fn other_algorithms_are_refused_even_with_the_right_key() {
        let claims = claims_2100("");
        // HS512 signed with the right secret.
        let signing_input = format!(
            "{}.{}",
            B64.encode(r#"{"alg":"HS512","typ":"JWT"}"#),
            B64.encode(&claims)
        );
        let mut mac = Hmac::<sha2::Sha512>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(signing_input.as_bytes());
        let hs512 = format!(
            "{signing_input}.{}",
            B64.encode(mac.finalize().into_bytes())
        );
        assert_eq!(
            verifier().verify_at(&hs512, IN_2100),
            Err(AuthError::Invalid)
        );
        // RS256 header over an HMAC signature (the classic key-confusion attempt).
        let rs256 = forge(r#"{"alg":"RS256","typ":"JWT"}"#, &claims, SECRET.as_bytes());
        assert_eq!(
            verifier().verify_at(&rs256, IN_2100),
            Err(AuthError::Invalid)
        );
        assert!(!is_local_token(&rs256));
        // alg none, with and without a signature part.
        let none_header = B64.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let body = B64.encode(&claims);
        assert_eq!(
            verifier().verify_at(&format!("{none_header}.{body}."), IN_2100),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            verifier().verify_at(&format!("{none_header}.{body}"), IN_2100),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn bad_signature_and_wrong_secret_are_refused() {
        let mut tampered = MEMBER_2100.to_string();
        tampered.pop();
        tampered.push(if MEMBER_2100.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(
            verifier().verify_at(&tampered, IN_2100),
            Err(AuthError::Invalid)
        );
        let other = JwtVerifier::new(&Secret::new("another-secret").unwrap());
        assert_eq!(
            other.verify_at(MEMBER_2100, IN_2100),
            Err(AuthError::Invalid)
        );
        // Claims swapped for an admin's under the original signature.
        let parts: Vec<&str> = MEMBER_2100.split('.').collect();
        let admin = B64.encode(claims_2100("").replace("member", "admin"));
        let swapped = format!("{}.{admin}.{}", parts[0], parts[2]);
        assert_eq!(
            verifier().verify_at(&swapped, IN_2100),
            Err(AuthError::Invalid)
        );
        assert_eq!(verifier().verify("not.a.jwt"), Err(AuthError::Invalid));
    }

    #[test]
    fn unknown_role_and_empty_sub_are_refused() {
        for claims in [
            claims_2100("").replace("member", "owner"),
            claims_2100("").replace(r#""role":"member","#, ""),
            claims_2100("").replace("user-1", "  "),
            claims_2100("").replace(r#""sub":"user-1","#, ""),
        ] {
            assert_eq!(
                verifier().verify_at(&hs256(&claims), IN_2100),
                Err(AuthError::Invalid),
                "{claims}"
            );
        }
    }

    #[test]
    fn members_change_their_own_and_read_unowned_admins_everything() {
        let secret = Secret::new(SECRET).unwrap();
        let t = mint(&secret, &Claims::issued_now("u1", Role::Member, vec![]));
        let member = verifier().verify(&t).unwrap();
        assert!(member.may_change(Some("u1")));
        assert!(!member.may_change(Some("u2")));
        assert!(!member.may_change(None));
        assert!(member.may_read(None));
        assert!(!member.may_read(Some("u2")));
        assert!(member.caps.is_empty());
        assert_eq!(member.owner_scope(), Some("u1"));
        let t = mint(&secret, &Claims::issued_now("a1", Role::Admin, vec![]));
        let admin = verifier().verify(&t).unwrap();
        assert!(admin.may_change(Some("u2")) && admin.may_change(None));
        assert_eq!(admin.owner_scope(), None);
    }
}
