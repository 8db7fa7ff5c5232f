//! Tokens from an external identity provider (Amazon Cognito, Auth0,
//! Keycloak): RS256 or ES256, verified against the provider's JWKS (which
//! the platform crate fetches and caches; this module is pure).
//!
//! Checked: the header's `alg` is RS256 or ES256 and names a `kid`; the key
//! with that `kid` exists, is of the matching type (RSA for RS256, EC P-256
//! for ES256), and if it declares an `alg` or a `use`, they agree (the
//! algorithm is pinned per key, so a provider's RSA key can never verify an
//! HS256 token); `iss` and `aud` equal the configured ones; `exp`, `iat`
//! required, `nbf` honoured, lifetime at most the configured maximum (as for
//! our own tokens); an e-mail claim is present and not marked unverified
//! (`email_verified: false`), since the e-mail is what maps the caller to
//! a `users` row.
//!
//! The groups claim (`cognito:groups` by default) is read only to choose
//! the role of a user created on first sign-in; afterwards the `users` row
//! is what counts (an admin may change role, caps, or deactivate it).

use super::{AuthError, LEEWAY_SECONDS, Role, check_times, valid_subject};
use crate::types::EmailAddress;
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse},
};
use serde_json::{Map, Value};

/// What an external token must look like, from `JWT_ISSUER`, `JWT_AUDIENCE`,
/// `JWT_GROUPS_CLAIM`, `JWT_ADMIN_GROUP`, `JWT_EMAIL_CLAIM`, `JWT_EXTERNAL_MAX_LIFETIME_SECONDS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalPolicy {
    pub issuer: String,
    pub audience: String,
    /// The claim listing the caller's groups (an array of strings, or one string).
    pub groups_claim: String,
    /// Membership in this group makes a first-time user an admin; `None`: everyone starts as member.
    pub admin_group: Option<String>,
    /// The claim carrying the e-mail address (`email` in Cognito ID tokens, Keycloak, Auth0 with the scope).
    pub email_claim: String,
    /// Longest accepted `exp − iat`, seconds (Cognito's default token validity is 60 minutes).
    pub max_lifetime: i64,
}

impl ExternalPolicy {
    pub const DEFAULT_GROUPS_CLAIM: &'static str = "cognito:groups";
    pub const DEFAULT_EMAIL_CLAIM: &'static str = "email";
    pub const DEFAULT_MAX_LIFETIME_SECONDS: i64 = 60 * 60;
}

/// A verified external caller, before it is mapped to a `users` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIdentity {
    pub email: EmailAddress,
    /// The provider's subject (logged as an id, never the e-mail).
    pub subject: String,
    /// The display name for a user created on first use (`name` claim, else the e-mail's local part).
    pub name: String,
    /// The role for a user created on first use (from the groups claim).
    pub role: Role,
}

/// Why an external token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternalRefusal {
    /// The header names a `kid` the key set does not hold: worth one refetch of the JWKS.
    UnknownKey,
    Refused(AuthError),
}

impl From<AuthError> for ExternalRefusal {
    fn from(e: AuthError) -> Self {
        Self::Refused(e)
    }
}

const INVALID: ExternalRefusal = ExternalRefusal::Refused(AuthError::Invalid);

/// Verifies `token` against `keys` under `policy` at `now` (seconds since the epoch).
pub fn verify(
    token: &str,
    keys: &JwkSet,
    policy: &ExternalPolicy,
    now: i64,
) -> Result<ExternalIdentity, ExternalRefusal> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| INVALID)?;
    let alg = header.alg;
    if !matches!(alg, Algorithm::RS256 | Algorithm::ES256) {
        return Err(INVALID);
    }
    let kid = header.kid.as_deref().ok_or(INVALID)?;
    let jwk = keys.find(kid).ok_or(ExternalRefusal::UnknownKey)?;
    let type_matches = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(_), Algorithm::RS256) => true,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
            ec.curve == EllipticCurve::P256
        }
        _ => false,
    };
    let declared_alg_matches = match jwk.common.key_algorithm {
        None => true,
        Some(KeyAlgorithm::RS256) => alg == Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => alg == Algorithm::ES256,
        Some(_) => false,
    };
    let use_matches = matches!(
        jwk.common.public_key_use,
        None | Some(PublicKeyUse::Signature)
    );
    if !(type_matches && declared_alg_matches && use_matches) {
        return Err(INVALID);
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| INVALID)?;
    let mut validation = Validation::new(alg);
    validation.algorithms = vec![alg];
    validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
    validation.set_issuer(&[&policy.issuer]);
    validation.set_audience(&[&policy.audience]);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.leeway = LEEWAY_SECONDS as u64;
    let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
        .map_err(|_| INVALID)?
        .claims;

    let int = |name: &str| claims.get(name).and_then(Value::as_i64);
    let (iat, exp) = (int("iat").ok_or(INVALID)?, int("exp").ok_or(INVALID)?);
    let nbf = match claims.get("nbf") {
        None => None,
        Some(v) => Some(v.as_i64().ok_or(INVALID)?),
    };
    check_times(iat, exp, nbf, policy.max_lifetime, now)?;
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .and_then(valid_subject)
        .ok_or(INVALID)?
        .to_string();
    if claims.get("email_verified").is_some_and(is_false) {
        return Err(INVALID);
    }
    let email = claims
        .get(&policy.email_claim)
        .and_then(Value::as_str)
        .and_then(|e| EmailAddress::parse(e).ok())
        .ok_or(INVALID)?;
    let name = claims
        .get("name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.chars().count() <= 120)
        .unwrap_or_else(|| email.local_part())
        .to_string();
    let in_admin_group =
        policy
            .admin_group
            .as_deref()
            .is_some_and(|admin| match claims.get(&policy.groups_claim) {
                Some(Value::Array(groups)) => groups.iter().any(|g| g.as_str() == Some(admin)),
                Some(Value::String(group)) => group == admin,
                _ => false,
            });
    Ok(ExternalIdentity {
        email,
        subject,
        name,
        role: if in_admin_group {
            Role::Admin
        } else {
            Role::Member
        },
    })
}

/// `false` or `"false"` (Cognito has sent both).
fn is_false(v: &Value) -> bool {
    matches!(v, Value::Bool(false)) || v.as_str() == Some("false")
}
