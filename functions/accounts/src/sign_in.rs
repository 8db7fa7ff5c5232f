//! Sign-in, refresh, sign-out, set-password, and the caller's own account.
//!
//! Sign-in order: parse, throttle check (429 before any hashing), look the
//! e-mail up, verify the password on a blocking thread (against a dummy
//! hash when there is no such user or no password yet, so every failure
//! costs the same), then count a failure or start a session.

use crate::{Answer, Deps, REFRESH_COOKIE, REFRESH_COOKIE_PATH, required_text, text};
use crm_domain::{
    EmailAddress,
    accounts::{
        links,
        password::{self, NewPassword},
        secrets::OpaqueToken,
        sessions::{self, EndReason, Issued, Rotation},
        throttle::{self, AttemptKeys},
        users::{self, User},
    },
    auth::{self, Claims, Principal, mint},
    campaigns::audit::{self, AuditEntry},
    crm::ApiError,
};
use crm_platform::http;
use lambda_http::Request;
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// Runs a password hash or check off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("password task failed: {e}")))
}

/// The access token and (for scripts) the refresh token, with the cookie.
fn session_answer(deps: &Deps, user: &User, issued: &Issued, include_refresh: bool) -> Answer {
    let claims = Claims {
        sid: Some(issued.session_id.to_string()),
        ..Claims::access(
            user.id.to_string(),
            user.role,
            user.caps.clone(),
            auth::now(),
            deps.config.access_ttl_seconds,
        )
    };
    let mut body = json!({
        "access_token": mint(&deps.config.signing_secret, &claims),
        "token_type": "Bearer",
        "expires_in": deps.config.access_ttl_seconds,
        "user": {
            "id": user.id,
            "email": user.email,
            "name": user.name,
            "role": user.role,
            "caps": user.caps,
        },
    });
    if include_refresh {
        body["refresh_token"] = json!(issued.refresh.expose());
    }
    let max_age = (issued.expires_at - chrono::Utc::now())
        .num_seconds()
        .max(0);
    Answer::json(200, body)
        .header("set-cookie", cookie(deps, issued.refresh.expose(), max_age))
        .header("cache-control", "no-store".into())
}

fn cookie(deps: &Deps, value: &str, max_age: i64) -> String {
    let secure = if deps.config.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{REFRESH_COOKIE}={value}; HttpOnly; SameSite=Strict; Path={REFRESH_COOKIE_PATH}; Max-Age={max_age}{secure}"
    )
}

fn wants_refresh_in_body(body: &Map<String, Value>) -> bool {
    body.get("include_refresh_token") == Some(&Value::Bool(true))
}

pub async fn login(
    deps: &Deps,
    body: &Map<String, Value>,
    address: &str,
) -> Result<Answer, ApiError> {
    let typed_email = required_text(body, "email")?;
    let password = required_text(body, "password")?.to_string();
    let keys = AttemptKeys::new(typed_email, address);
    let client = deps.pool.get().await?;
    if let Some(secs) = throttle::locked_for(&client, &keys).await? {
        return Err(ApiError::TooManyAttempts {
            retry_after_seconds: secs,
        });
    }
    let credentials = match EmailAddress::parse(typed_email) {
        Ok(email) => users::credentials_by_email(&client, &email).await?,
        Err(_) => None,
    };
    let (user, hash) = match credentials {
        Some(c) if c.user.active => (Some(c.user), c.password_hash),
        _ => (None, None),
    };
    let matches = blocking(move || password::verify(&password, hash.as_deref())).await?;
    let Some(user) = user.filter(|_| matches) else {
        let locked = throttle::record_failure(&client, &keys, &deps.config.throttle).await?;
        tracing::info!(locked = locked.is_some(), "sign-in failed");
        return Err(ApiError::InvalidCredentials);
    };
    throttle::clear_account(&client, &keys).await?;
    let issued = sessions::start(&client, user.id, deps.config.session_seconds).await?;
    users::touch_last_sign_in(&client, user.id).await?;
    tracing::info!(user_id = %user.id, session_id = %issued.session_id, "signed in");
    Ok(session_answer(
        deps,
        &user,
        &issued,
        wants_refresh_in_body(body),
    ))
}

/// The refresh token from the cookie, else from the body's `refresh_token`.
fn presented_refresh(
    req: &Request,
    body: &Map<String, Value>,
) -> Result<Option<OpaqueToken>, ApiError> {
    let from_cookie = http::header(req, "cookie").and_then(|header| {
        header.split(';').find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == REFRESH_COOKIE && !value.is_empty()).then_some(value)
        })
    });
    let raw = match from_cookie {
        Some(v) => Some(v),
        None => text(body, "refresh_token")?,
    };
    Ok(raw.and_then(OpaqueToken::parse))
}

pub async fn refresh(
    deps: &Deps,
    req: &Request,
    body: &Map<String, Value>,
) -> Result<Answer, ApiError> {
    let token = presented_refresh(req, body)?.ok_or(ApiError::SessionInvalid)?;
    let mut client = deps.pool.get().await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| ApiError::from_db(e, "starting the refresh"))?;
    let rotation = sessions::rotate(&tx, &token).await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::from_db(e, "committing the refresh"))?;
    match rotation {
        Rotation::Rotated { issued, user } => {
            tracing::info!(user_id = %user.id, session_id = %issued.session_id, "session refreshed");
            Ok(session_answer(
                deps,
                &user,
                &issued,
                wants_refresh_in_body(body),
            ))
        }
        Rotation::ReuseDetected => {
            tracing::warn!("refresh token reused: session revoked");
            Err(ApiError::SessionInvalid)
        }
        Rotation::Ended | Rotation::Unknown => Err(ApiError::SessionInvalid),
    }
}

pub async fn logout(
    deps: &Deps,
    req: &Request,
    body: &Map<String, Value>,
) -> Result<Answer, ApiError> {
    if let Some(token) = presented_refresh(req, body)? {
        let client = deps.pool.get().await?;
        if let Some(session_id) = sessions::session_of(&client, &token).await? {
            sessions::end(&client, session_id, EndReason::Logout).await?;
            tracing::info!(session_id = %session_id, "signed out");
        }
    }
    Ok(Answer::no_content()
        .header("set-cookie", cookie(deps, "", 0))
        .header("cache-control", "no-store".into()))
}

pub async fn set_password(deps: &Deps, body: &Map<String, Value>) -> Result<Answer, ApiError> {
    let raw_token = required_text(body, "token")?;
    let new = NewPassword::parse(required_text(body, "password")?)
        .map_err(|r| ApiError::validation("password", r))?;
    let invalid = || ApiError::validation("token", "is invalid, used, superseded or expired");
    let token = OpaqueToken::parse(raw_token).ok_or_else(invalid)?;
    let hash = blocking(move || password::hash(&new)).await??;
    let mut client = deps.pool.get().await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| ApiError::from_db(e, "starting set-password"))?;
    let user_id = links::redeem(&tx, &token).await?.ok_or_else(invalid)?;
    users::set_password_hash(&tx, user_id, &hash).await?;
    // A reset ends every session (whoever had the old password is out).
    sessions::end_all(&tx, user_id, EndReason::PasswordChanged, None).await?;
    audit_password(&tx, user_id, &format!("user:{user_id}"), "link").await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::from_db(e, "committing set-password"))?;
    tracing::info!(user_id = %user_id, "password set from a link");
    Ok(Answer::no_content())
}

async fn audit_password(
    db: &impl crm_domain::db::GenericClient,
    user_id: Uuid,
    actor: &str,
    via: &str,
) -> Result<(), ApiError> {
    audit::record(
        db,
        &AuditEntry {
            action: "crm.user.password_set",
            actor,
            target_type: "user",
            target_id: Some(user_id.to_string()),
            details: json!({"via": via}),
        },
    )
    .await?;
    Ok(())
}

/// The caller's `users` row (a token whose `sub` is not a user — e.g. one
/// from `mint-token` — has none: 404).
async fn own_row(deps: &Deps, who: &Principal) -> Result<User, ApiError> {
    let id = Uuid::parse_str(who.user_id()).map_err(|_| ApiError::NotFound("user"))?;
    let client = deps.pool.get().await?;
    users::get(&client, id)
        .await?
        .filter(|u| u.active)
        .ok_or(ApiError::NotFound("user"))
}

pub async fn me(deps: &Deps, who: &Principal) -> Result<Answer, ApiError> {
    let user = own_row(deps, who).await?;
    Ok(Answer::json(200, json!(user)))
}

pub async fn change_password(
    deps: &Deps,
    who: &Principal,
    body: &Map<String, Value>,
) -> Result<Answer, ApiError> {
    let user = own_row(deps, who).await?;
    let current = required_text(body, "current_password")?.to_string();
    let new = NewPassword::parse(required_text(body, "new_password")?)
        .map_err(|r| ApiError::validation("new_password", r))?;
    let client = deps.pool.get().await?;
    let stored = users::password_hash(&client, user.id).await?;
    drop(client);
    let ok = blocking(move || password::verify(&current, stored.as_deref())).await?;
    if !ok {
        return Err(ApiError::validation("current_password", "is incorrect"));
    }
    let hash = blocking(move || password::hash(&new)).await??;
    let keep = who.session_id().and_then(|s| Uuid::parse_str(s).ok());
    let mut client = deps.pool.get().await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| ApiError::from_db(e, "starting the password change"))?;
    users::set_password_hash(&tx, user.id, &hash).await?;
    let ended = sessions::end_all(&tx, user.id, EndReason::PasswordChanged, keep).await?;
    audit_password(&tx, user.id, &who.actor(), "change").await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::from_db(e, "committing the password change"))?;
    tracing::info!(user_id = %user.id, other_sessions_ended = ended, "password changed");
    Ok(Answer::no_content())
}
