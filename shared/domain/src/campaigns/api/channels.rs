//! Channels: enabled flag and rate per channel (secrets stay in configuration).

use super::{CHANNELS, db_err};
use crate::{
    auth::Principal,
    campaigns::audit::{self, AuditEntry},
    crm::{ApiError, Done},
    db::GenericClient,
};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tokio_postgres::Row;

fn channel_json(r: &Row) -> Value {
    json!({
        "name": r.get::<_, String>(0),
        "enabled": r.get::<_, bool>(1),
        "rate_per_second": r.get::<_, f64>(2),
        "updated_by": r.get::<_, Option<String>>(3),
        "updated_at": r.get::<_, DateTime<Utc>>(4),
    })
}

const CHANNEL_COLUMNS: &str = "name, enabled, rate_per_second::float8, updated_by, updated_at";

pub async fn list_channels(db: &impl GenericClient) -> Result<Value, ApiError> {
    let sql = format!("select {CHANNEL_COLUMNS} from channels order by name");
    let rows = db
        .query(sql.as_str(), &[])
        .await
        .map_err(|e| db_err(e, "listing channels"))?;
    Ok(json!({"items": rows.iter().map(channel_json).collect::<Vec<_>>()}))
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChannelUpdate {
    pub enabled: Option<bool>,
    pub rate_per_second: Option<f64>,
}

impl ChannelUpdate {
    pub fn parse(body: Map<String, Value>) -> Result<Self, ApiError> {
        if let Some(k) = body
            .keys()
            .find(|k| !["enabled", "rate_per_second"].contains(&k.as_str()))
        {
            return Err(ApiError::validation(k.clone(), "is not a known field"));
        }
        let enabled = match body.get("enabled") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(ApiError::validation("enabled", "must be true or false")),
        };
        let rate_per_second = match body.get("rate_per_second") {
            None => None,
            Some(v) => match v.as_f64() {
                Some(r) if (0.001..=1000.0).contains(&r) => Some(r),
                _ => {
                    return Err(ApiError::validation(
                        "rate_per_second",
                        "must be a number from 0.001 to 1000",
                    ));
                }
            },
        };
        if enabled.is_none() && rate_per_second.is_none() {
            return Err(ApiError::validation(
                "body",
                "must set enabled and/or rate_per_second",
            ));
        }
        Ok(Self {
            enabled,
            rate_per_second,
        })
    }
}

pub async fn update_channel(
    db: &impl GenericClient,
    who: &Principal,
    name: &str,
    u: ChannelUpdate,
) -> Result<Done, ApiError> {
    if !CHANNELS.contains(&name) {
        return Err(ApiError::NotFound("channel"));
    }
    let sql = format!(
        "update channels set enabled = coalesce($2, enabled), \
             rate_per_second = coalesce($3::float8::numeric(8, 3), rate_per_second), \
             updated_by = $4, updated_at = now() where name = $1 returning {CHANNEL_COLUMNS}"
    );
    let row = db
        .query_opt(
            sql.as_str(),
            &[&name, &u.enabled, &u.rate_per_second, &who.actor()],
        )
        .await
        .map_err(|e| db_err(e, "updating a channel"))?
        .ok_or(ApiError::NotFound("channel"))?;
    audit::record(
        db,
        &AuditEntry {
            action: "crm.channel.updated",
            actor: &who.actor(),
            target_type: "channel",
            target_id: Some(name.to_string()),
            details: json!({"enabled": row.get::<_, bool>(1), "rate_per_second": row.get::<_, f64>(2)}),
        },
    )
    .await?;
    Ok(Done::new(200, channel_json(&row)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn channel_updates_are_bounded() {
        assert!(ChannelUpdate::parse(obj(json!({"rate_per_second": 0}))).is_err());
        assert!(ChannelUpdate::parse(obj(json!({"rate_per_second": 1001}))).is_err());
        assert!(ChannelUpdate::parse(obj(json!({}))).is_err());
        assert!(ChannelUpdate::parse(obj(json!({"secret": "x"}))).is_err());
        assert_eq!(
            ChannelUpdate::parse(obj(json!({"enabled": true, "rate_per_second": 2.5}))).unwrap(),
            ChannelUpdate {
                enabled: Some(true),
                rate_per_second: Some(2.5)
            }
        );
    }
}
