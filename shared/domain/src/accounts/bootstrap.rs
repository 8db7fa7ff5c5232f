//! The first admin. In AWS: the migrate function's `{"bootstrap_admin":
//! {"email", "name"}}` creates one (no password; it answers a set-password
//! link) and is refused once any admin exists. Under `make run`: a
//! development admin with a known password when there are no users at all.

use super::{
    links::{self, IssuedLink},
    users::{self, NewUser, Origin, User},
};
use crate::{EmailAddress, auth::Role, campaigns::audit};
use anyhow::Context;
use deadpool_postgres::Client;

/// Serialises bootstraps across processes (an arbitrary constant).
const BOOTSTRAP_LOCK: i64 = 0x0ACC_0B00_75A7_0001;

#[derive(Debug)]
pub enum Bootstrap {
    Created {
        user: User,
        link: IssuedLink,
    },
    /// An admin exists already: nothing was changed.
    AdminExists,
    /// The e-mail belongs to an existing (non-admin) user: nothing was changed.
    EmailTaken,
}

/// Creates the first admin, with a set-password link, unless an admin exists.
pub async fn first_admin(
    client: &mut Client,
    email: &EmailAddress,
    name: &str,
) -> anyhow::Result<Bootstrap> {
    let tx = client
        .transaction()
        .await
        .context("starting the bootstrap")?;
    tx.execute("select pg_advisory_xact_lock($1)", &[&BOOTSTRAP_LOCK])
        .await
        .context("taking the bootstrap lock")?;
    if users::any_admin(&tx).await? {
        return Ok(Bootstrap::AdminExists);
    }
    let Some(user) = users::insert(
        &tx,
        &NewUser {
            email,
            name,
            role: Role::Admin,
            caps: &[],
            origin: Origin::Bootstrap,
            password_hash: None,
        },
    )
    .await?
    else {
        return Ok(Bootstrap::EmailTaken);
    };
    let link = links::issue(&tx, user.id).await?;
    audit::record(
        &tx,
        &audit::AuditEntry {
            action: "crm.user.created",
            actor: "system:bootstrap",
            target_type: "user",
            target_id: Some(user.id.to_string()),
            details: serde_json::json!({"origin": "bootstrap", "role": "admin"}),
        },
    )
    .await?;
    tx.commit().await.context("committing the bootstrap")?;
    Ok(Bootstrap::Created { user, link })
}

/// Under `make run` only: an admin with `password_hash` when the table is
/// empty. `None` when any user exists.
pub async fn development_admin(
    client: &mut Client,
    email: &EmailAddress,
    password_hash: &str,
) -> anyhow::Result<Option<User>> {
    let tx = client
        .transaction()
        .await
        .context("starting the dev admin")?;
    tx.execute("select pg_advisory_xact_lock($1)", &[&BOOTSTRAP_LOCK])
        .await
        .context("taking the bootstrap lock")?;
    if users::any_user(&tx).await? {
        return Ok(None);
    }
    let user = users::insert(
        &tx,
        &NewUser {
            email,
            name: "Development admin",
            role: Role::Admin,
            caps: &["can_use_crm".to_string(), "campaigns:send".to_string()],
            origin: Origin::Development,
            password_hash: Some(password_hash),
        },
    )
    .await?;
    tx.commit().await.context("committing the dev admin")?;
    Ok(user)
}
