//! The admin's team screen: list, invite, change, sign out everywhere,
//! re-invite / reset. Admins only (403 otherwise). Every change is in the
//! audit log with ids, roles and caps only — never a link or an e-mail.
//! The last active admin can be neither demoted nor deactivated (409).

use crate::{Answer, Deps, text};
use crm_domain::{
    EmailAddress,
    accounts::{
        links,
        sessions::{self, EndReason},
        users::{self, NewUser, Origin, User, UserPatch},
    },
    auth::{CAPABILITIES, Principal, Role},
    campaigns::audit::{self, AuditEntry},
    crm::ApiError,
    db::GenericClient,
    mail::OutboundEmail,
};
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

fn require_admin(who: &Principal) -> Result<(), ApiError> {
    if who.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden("managing users is for admins".into()))
    }
}

fn parse_id(id: Option<&str>) -> Result<Uuid, ApiError> {
    id.and_then(|raw| Uuid::parse_str(raw).ok())
        .ok_or(ApiError::NotFound("user"))
}

fn parse_role(body: &Map<String, Value>) -> Result<Option<Role>, ApiError> {
    text(body, "role")?
        .map(|r| {
            Role::parse(r.trim())
                .ok_or_else(|| ApiError::validation("role", "must be admin or member"))
        })
        .transpose()
}

/// Capabilities from the known list ([`CAPABILITIES`]), deduplicated, sorted.
pub fn parse_caps(body: &Map<String, Value>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(raw) = body.get("caps").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let items = raw
        .as_array()
        .ok_or_else(|| ApiError::validation("caps", "must be an array of strings"))?;
    let mut caps = Vec::new();
    for item in items {
        let cap = item
            .as_str()
            .ok_or_else(|| ApiError::validation("caps", "must be an array of strings"))?;
        if !CAPABILITIES.contains(&cap) {
            return Err(ApiError::validation(
                "caps",
                format!(
                    "has an unknown capability (known: {})",
                    CAPABILITIES.join(", ")
                ),
            ));
        }
        if !caps.iter().any(|c| c == cap) {
            caps.push(cap.to_string());
        }
    }
    caps.sort();
    Ok(Some(caps))
}

fn parse_name(body: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    text(body, "name")?
        .map(|n| {
            let n = n.trim();
            if n.is_empty() || n.chars().count() > 120 || n.chars().any(char::is_control) {
                Err(ApiError::validation("name", "must be 1 to 120 characters"))
            } else {
                Ok(n.to_string())
            }
        })
        .transpose()
}

pub async fn list(deps: &Deps, who: &Principal) -> Result<Answer, ApiError> {
    require_admin(who)?;
    let client = deps.pool.get().await?;
    let items = users::list(&client).await?;
    Ok(Answer::json(200, json!({ "items": items })))
}

/// Whether the invitation e-mail went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Invitation {
    Sent,
    /// SES is not configured: hand the link over yourself.
    NotConfigured,
    /// SES refused or failed: the link in this answer still works.
    Failed,
}

fn link_url(deps: &Deps, token: &str) -> String {
    format!("{}/set-password?token={token}", deps.config.public_base_url)
}

async fn mail_link(deps: &Deps, user: &User, url: &str, reference: Uuid) -> Invitation {
    let Some(mailer) = &deps.mailer else {
        return Invitation::NotConfigured;
    };
    let email = OutboundEmail {
        to: user.email.clone(),
        subject: "Set your CRM password".into(),
        text: format!(
            "Hello {},\n\nOpen this link to set your password (valid for {} hours, once):\n\n{url}\n\nIf you did not expect this e-mail, ignore it.\n",
            user.name,
            links::LINK_LIFETIME_HOURS
        ),
        html: None,
        headers: Vec::new(),
        reference,
    };
    match mailer.send(&email).await {
        Ok(_) => Invitation::Sent,
        Err(e) => {
            tracing::warn!(user_id = %user.id, error = %e, "set-password e-mail not sent");
            Invitation::Failed
        }
    }
}

async fn record(
    db: &impl GenericClient,
    who: &Principal,
    action: &'static str,
    target: Uuid,
    details: Value,
) -> Result<(), ApiError> {
    audit::record(
        db,
        &AuditEntry {
            action,
            actor: &who.actor(),
            target_type: "user",
            target_id: Some(target.to_string()),
            details,
        },
    )
    .await?;
    Ok(())
}

pub async fn create(
    deps: &Deps,
    who: &Principal,
    body: &Map<String, Value>,
) -> Result<Answer, ApiError> {
    require_admin(who)?;
    let email = EmailAddress::parse(text(body, "email")?.unwrap_or(""))
        .map_err(|r| ApiError::validation("email", r))?;
    let name = parse_name(body)?.unwrap_or_else(|| email.local_part().to_string());
    let role = parse_role(body)?.unwrap_or(Role::Member);
    let caps = parse_caps(body)?.unwrap_or_default();
    let mut client = deps.pool.get().await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| ApiError::from_db(e, "starting the user create"))?;
    let user = users::insert(
        &tx,
        &NewUser {
            email: &email,
            name: &name,
            role,
            caps: &caps,
            origin: Origin::Invited,
            password_hash: None,
        },
    )
    .await?
    .ok_or_else(|| ApiError::conflict("email", "is already used by another user"))?;
    let link = links::issue(&tx, user.id).await?;
    record(
        &tx,
        who,
        "crm.user.created",
        user.id,
        json!({"role": user.role, "caps": user.caps}),
    )
    .await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::from_db(e, "committing the user create"))?;
    let url = link_url(deps, link.token.expose());
    let invitation = mail_link(deps, &user, &url, user.id).await;
    tracing::info!(user_id = %user.id, ?invitation, "user invited");
    Ok(Answer::json(
        201,
        json!({
            "user": user,
            "set_password_url": url,
            "set_password_expires_at": link.expires_at,
            "invitation": invitation,
        }),
    ))
}

pub async fn update(
    deps: &Deps,
    who: &Principal,
    id: Option<&str>,
    body: &Map<String, Value>,
) -> Result<Answer, ApiError> {
    require_admin(who)?;
    let id = parse_id(id)?;
    let active = match body.get("active") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(ApiError::validation("active", "must be true or false")),
    };
    let patch = UserPatch {
        name: parse_name(body)?,
        role: parse_role(body)?,
        caps: parse_caps(body)?,
        active,
    };
    if patch.is_empty() {
        return Err(ApiError::validation(
            "body",
            "names nothing to change (name, role, caps, active)",
        ));
    }
    let mut client = deps.pool.get().await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| ApiError::from_db(e, "starting the user update"))?;
    // Lock the active admins first (always in this order), then the target.
    let admins = users::lock_active_admins(&tx).await?;
    let before = users::get_for_update(&tx, id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    let loses_admin = before.active
        && before.role == Role::Admin
        && (patch.role == Some(Role::Member) || patch.active == Some(false));
    if loses_admin && admins.iter().all(|a| *a == id) {
        return Err(ApiError::Refused {
            code: "last_admin",
            message: "the last active admin can be neither demoted nor deactivated".into(),
        });
    }
    let after = users::update(&tx, id, &patch)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    let mut changes = Map::new();
    if before.name != after.name {
        changes.insert("name".into(), json!(true));
    }
    if before.role != after.role {
        changes.insert(
            "role".into(),
            json!({"from": before.role, "to": after.role}),
        );
    }
    if before.caps != after.caps {
        changes.insert(
            "caps".into(),
            json!({"from": before.caps, "to": after.caps}),
        );
    }
    if before.active != after.active {
        changes.insert(
            "active".into(),
            json!({"from": before.active, "to": after.active}),
        );
    }
    let deactivated = before.active && !after.active;
    if deactivated {
        sessions::end_all(&tx, id, EndReason::Deactivated, None).await?;
    }
    let action = if deactivated {
        "crm.user.deactivated"
    } else {
        "crm.user.updated"
    };
    record(&tx, who, action, id, Value::Object(changes)).await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::from_db(e, "committing the user update"))?;
    tracing::info!(user_id = %id, deactivated, "user updated");
    Ok(Answer::json(200, json!(after)))
}

pub async fn sign_out_everywhere(
    deps: &Deps,
    who: &Principal,
    id: Option<&str>,
) -> Result<Answer, ApiError> {
    require_admin(who)?;
    let id = parse_id(id)?;
    let mut client = deps.pool.get().await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| ApiError::from_db(e, "starting sign-out everywhere"))?;
    users::get(&tx, id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    let ended = sessions::end_all(&tx, id, EndReason::SignedOutEverywhere, None).await?;
    record(
        &tx,
        who,
        "crm.user.signed_out",
        id,
        json!({"sessions": ended}),
    )
    .await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::from_db(e, "committing sign-out everywhere"))?;
    Ok(Answer::no_content())
}

pub async fn password_link(
    deps: &Deps,
    who: &Principal,
    id: Option<&str>,
) -> Result<Answer, ApiError> {
    require_admin(who)?;
    let id = parse_id(id)?;
    let mut client = deps.pool.get().await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| ApiError::from_db(e, "starting the link issue"))?;
    let user = users::get_for_update(&tx, id)
        .await?
        .filter(|u| u.active)
        .ok_or(ApiError::NotFound("user"))?;
    let link = links::issue(&tx, id).await?;
    record(&tx, who, "crm.user.password_link_issued", id, json!({})).await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::from_db(e, "committing the link issue"))?;
    let url = link_url(deps, link.token.expose());
    let invitation = mail_link(deps, &user, &url, Uuid::now_v7()).await;
    Ok(Answer::json(
        201,
        json!({
            "set_password_url": url,
            "set_password_expires_at": link.expires_at,
            "invitation": invitation,
        }),
    ))
}
