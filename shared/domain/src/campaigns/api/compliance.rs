//! Opt-outs (the API and the unsubscribe link) and the module switch.
//! Opt-outs are one suppression list per channel (`opt_outs`), shared with
//! Twilio STOP keywords and Instantly unsubscribe intents; the audit entries
//! carry the contact id and channel, never an address.

use super::{CHANNELS, campaigns, db_err};
use crate::{
    auth::Principal,
    campaigns::{
        audit::{self, AuditEntry},
        switch,
    },
    crm::{
        ApiError, Done,
        input::{Fields, Patch},
    },
    db::GenericClient,
    unsubscribe::Unsubscribe,
};
use serde_json::{Map, Value, json};
use uuid::Uuid;

fn channel_of(raw: &str) -> Result<&str, ApiError> {
    CHANNELS
        .iter()
        .find(|c| **c == raw)
        .copied()
        .ok_or(ApiError::NotFound("channel"))
}

/// The contact, if the caller may see it (members: own or unowned).
async fn visible_contact(
    db: &impl GenericClient,
    who: &Principal,
    id: Uuid,
) -> Result<(), ApiError> {
    let owner = db
        .query_opt("select owner_id from contacts where id = $1", &[&id])
        .await
        .map_err(|e| db_err(e, "reading the contact"))?
        .ok_or(ApiError::NotFound("contact"))?;
    if who.may_read(owner.get::<_, Option<String>>(0).as_deref()) {
        Ok(())
    } else {
        Err(ApiError::NotFound("contact"))
    }
}

/// POST contacts/{id}/opt-outs/{channel}: 201 when recorded, 200 when it already was.
pub async fn add_opt_out(
    db: &impl GenericClient,
    who: &Principal,
    contact_id: Uuid,
    channel: &str,
) -> Result<Done, ApiError> {
    let channel = channel_of(channel)?;
    visible_contact(db, who, contact_id).await?;
    let reason = format!("api {}", who.actor());
    let created = db
        .execute(
            "insert into opt_outs (contact_id, channel, source, reason) values ($1, $2, 'api', $3) \
             on conflict (contact_id, channel) do nothing",
            &[&contact_id, &channel, &reason],
        )
        .await
        .map_err(|e| db_err(e, "recording an opt-out"))?
        == 1;
    if created {
        audit::record(
            db,
            &AuditEntry {
                action: "crm.opt_out.created",
                actor: &who.actor(),
                target_type: "contact",
                target_id: Some(contact_id.to_string()),
                details: json!({"channel": channel, "source": "api"}),
            },
        )
        .await?;
    }
    Ok(Done::new(
        if created { 201 } else { 200 },
        json!({"contact_id": contact_id, "channel": channel, "opted_out": true, "created": created}),
    ))
}

/// Body of DELETE contacts/{id}/opt-outs/{channel}: `{"reason": "…"}`, required.
pub fn parse_lift_reason(body: Map<String, Value>) -> Result<String, ApiError> {
    match Fields::new(body, &["reason"])?.text("reason", 500)? {
        Patch::Set(r) => Ok(r),
        _ => Err(ApiError::validation(
            "reason",
            "is required: say why this contact may be messaged again",
        )),
    }
}

/// DELETE contacts/{id}/opt-outs/{channel}: an admin lifts the suppression,
/// giving a reason (audited with the opt-out's source). Members never lift
/// one (403): an opt-out the contact gave (STOP, the unsubscribe link, an
/// unsubscribe reply) is lifted by the contact (START) or an admin. 404 when none.
pub async fn remove_opt_out(
    db: &impl GenericClient,
    who: &Principal,
    contact_id: Uuid,
    channel: &str,
    reason: &str,
) -> Result<Done, ApiError> {
    if !who.is_admin() {
        return Err(ApiError::Forbidden(
            "only admins may lift an opt-out".into(),
        ));
    }
    let channel = channel_of(channel)?;
    visible_contact(db, who, contact_id).await?;
    let removed = db
        .query_opt(
            "delete from opt_outs where contact_id = $1 and channel = $2 returning source",
            &[&contact_id, &channel],
        )
        .await
        .map_err(|e| db_err(e, "removing an opt-out"))?;
    let Some(removed) = removed else {
        return Err(ApiError::NotFound("opt-out"));
    };
    let source: String = removed.get(0);
    audit::record(
        db,
        &AuditEntry {
            action: "crm.opt_out.deleted",
            actor: &who.actor(),
            target_type: "contact",
            target_id: Some(contact_id.to_string()),
            details: json!({"channel": channel, "source": source, "reason": reason}),
        },
    )
    .await?;
    Ok(Done::new(
        200,
        json!({"contact_id": contact_id, "channel": channel, "opted_out": false}),
    ))
}

/// What an unsubscribe link did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsubscribed {
    /// The opt-out was recorded now.
    Recorded,
    /// It was already on the list (a second click).
    AlreadyOptedOut,
    /// The contact no longer exists: nothing to suppress.
    UnknownContact,
}

/// Records the opt-out a verified unsubscribe token asks for (source
/// `unsubscribe_link`), audited with ids only.
pub async fn unsubscribe(db: &impl GenericClient, u: &Unsubscribe) -> anyhow::Result<Unsubscribed> {
    let Some(channel) = CHANNELS.iter().find(|c| **c == u.channel) else {
        anyhow::bail!("unsubscribe token names an unknown channel");
    };
    let reason = u.campaign_id.map(|k| format!("campaign {k}"));
    let row = db
        .query_one(
            "with c as (select id from contacts where id = $1), \
             ins as (insert into opt_outs (contact_id, channel, source, reason) \
                     select id, $2, 'unsubscribe_link', $3 from c \
                     on conflict (contact_id, channel) do nothing returning 1) \
             select exists (select 1 from c), exists (select 1 from ins)",
            &[&u.contact_id, channel, &reason],
        )
        .await
        .map_err(anyhow::Error::new)?;
    let (exists, inserted): (bool, bool) = (row.get(0), row.get(1));
    if !exists {
        return Ok(Unsubscribed::UnknownContact);
    }
    if !inserted {
        return Ok(Unsubscribed::AlreadyOptedOut);
    }
    audit::record(
        db,
        &AuditEntry {
            action: "crm.opt_out.created",
            actor: "unsubscribe_link",
            target_type: "contact",
            target_id: Some(u.contact_id.to_string()),
            details: json!({"channel": channel, "source": "unsubscribe_link", "campaign_id": u.campaign_id}),
        },
    )
    .await?;
    Ok(Unsubscribed::Recorded)
}

fn module_json(s: &switch::ModuleState) -> Value {
    json!({
        "module": "crm",
        "enabled": s.enabled,
        "reason": s.reason,
        "updated_by": s.updated_by,
        "updated_at": s.updated_at,
    })
}

pub async fn get_module(db: &impl GenericClient) -> Result<Value, ApiError> {
    match switch::state(db).await? {
        Some(s) => Ok(module_json(&s)),
        None => Ok(json!({"module": "crm", "enabled": true})),
    }
}

/// PUT module: sets the switch, audited; switching it back on enqueues a
/// runner for every queued/sending campaign (their rows stayed queued).
pub async fn set_module(
    db: &impl GenericClient,
    who: &Principal,
    enabled: bool,
    reason: Option<&str>,
) -> Result<Done, ApiError> {
    let s = switch::set(db, enabled, reason, &who.actor()).await?;
    let jobs = if enabled && s.changed {
        campaigns::enqueue_active(db).await?
    } else {
        Vec::new()
    };
    audit::record(
        db,
        &AuditEntry {
            action: "crm.module.toggled",
            actor: &who.actor(),
            target_type: "module",
            target_id: Some("crm".into()),
            details: json!({"enabled": enabled, "changed": s.changed, "campaigns_resumed": jobs.len()}),
        },
    )
    .await?;
    let mut body = module_json(&s);
    body["changed"] = json!(s.changed);
    body["campaigns_resumed"] = json!(jobs.len());
    let mut done = Done::new(200, body);
    done.enqueued = jobs;
    Ok(done)
}
