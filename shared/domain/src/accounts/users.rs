//! The `users` table: team members who sign in. E-mails are stored
//! normalised (trimmed, lower-case: [`EmailAddress`]); the password hash
//! never leaves this module except to the password verifier.

use crate::{
    auth::{ExternalIdentity, Principal, Role},
    db::GenericClient,
    types::EmailAddress,
};
use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Row;
use uuid::Uuid;

/// How an account came to be (the `origin` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Invited,
    Bootstrap,
    Development,
    External,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Invited => "invited",
            Origin::Bootstrap => "bootstrap",
            Origin::Development => "development",
            Origin::External => "external",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "bootstrap" => Origin::Bootstrap,
            "development" => Origin::Development,
            "external" => Origin::External,
            _ => Origin::Invited,
        }
    }
}

/// A user as the API shows it (never the hash).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub caps: Vec<String>,
    pub active: bool,
    pub origin: Origin,
    /// Whether a password is set (false until the set-password link is followed).
    pub has_password: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_sign_in_at: Option<DateTime<Utc>>,
}

impl User {
    /// The caller this user is, for a request authenticated some other way
    /// than our own token (an external provider's token mapped to this row).
    pub(crate) fn principal(&self) -> Principal {
        Principal::new(self.id.to_string(), self.role, self.caps.clone())
    }
}

/// What sign-in reads: the user and their hash (absent until set).
pub struct Credentials {
    pub user: User,
    pub password_hash: Option<String>,
}

const COLUMNS: &str = "id, email, name, role, caps, active, origin, password_hash is not null, \
                       created_at, updated_at, last_sign_in_at";

fn user(r: &Row) -> User {
    User {
        id: r.get(0),
        email: r.get(1),
        name: r.get(2),
        role: Role::parse(r.get::<_, &str>(3)).unwrap_or(Role::Member),
        caps: r.get(4),
        active: r.get(5),
        origin: Origin::parse(r.get(6)),
        has_password: r.get(7),
        created_at: r.get(8),
        updated_at: r.get(9),
        last_sign_in_at: r.get(10),
    }
}

/// A new account's fields (already validated).
pub struct NewUser<'a> {
    pub email: &'a EmailAddress,
    pub name: &'a str,
    pub role: Role,
    pub caps: &'a [String],
    pub origin: Origin,
    pub password_hash: Option<&'a str>,
}

/// Inserts a user; `None` when the e-mail is taken.
pub async fn insert(db: &impl GenericClient, u: &NewUser<'_>) -> anyhow::Result<Option<User>> {
    let stmt = db
        .prepare_cached(&format!(
            "insert into users (email, name, role, caps, origin, password_hash) \
             values ($1, $2, $3, $4, $5, $6) on conflict (email) do nothing returning {COLUMNS}"
        ))
        .await
        .context("preparing the user insert")?;
    let row = db
        .query_opt(
            &stmt,
            &[
                &u.email.as_str(),
                &u.name,
                &u.role.as_str(),
                &u.caps,
                &u.origin.as_str(),
                &u.password_hash,
            ],
        )
        .await
        .context("inserting a user")?;
    Ok(row.as_ref().map(user))
}

pub async fn get(db: &impl GenericClient, id: Uuid) -> anyhow::Result<Option<User>> {
    let stmt = db
        .prepare_cached(&format!("select {COLUMNS} from users where id = $1"))
        .await
        .context("preparing the user read")?;
    let row = db
        .query_opt(&stmt, &[&id])
        .await
        .context("reading a user")?;
    Ok(row.as_ref().map(user))
}

/// [`get`], locking the row for the rest of the transaction.
pub async fn get_for_update(db: &impl GenericClient, id: Uuid) -> anyhow::Result<Option<User>> {
    let stmt = db
        .prepare_cached(&format!(
            "select {COLUMNS} from users where id = $1 for update"
        ))
        .await
        .context("preparing the user lock")?;
    let row = db
        .query_opt(&stmt, &[&id])
        .await
        .context("locking a user")?;
    Ok(row.as_ref().map(user))
}

/// Every user, by e-mail (teams are small; the admin screen shows them all).
pub async fn list(db: &impl GenericClient) -> anyhow::Result<Vec<User>> {
    let stmt = db
        .prepare_cached(&format!("select {COLUMNS} from users order by email"))
        .await
        .context("preparing the user list")?;
    let rows = db.query(&stmt, &[]).await.context("listing users")?;
    Ok(rows.iter().map(user).collect())
}

pub async fn credentials_by_email(
    db: &impl GenericClient,
    email: &EmailAddress,
) -> anyhow::Result<Option<Credentials>> {
    let stmt = db
        .prepare_cached(&format!(
            "select {COLUMNS}, password_hash from users where email = $1"
        ))
        .await
        .context("preparing the credentials read")?;
    let row = db
        .query_opt(&stmt, &[&email.as_str()])
        .await
        .context("reading credentials")?;
    Ok(row.map(|r| Credentials {
        user: user(&r),
        password_hash: r.get(11),
    }))
}

/// The hash of `id`'s password (for a password change), if set.
pub async fn password_hash(db: &impl GenericClient, id: Uuid) -> anyhow::Result<Option<String>> {
    let stmt = db
        .prepare_cached("select password_hash from users where id = $1")
        .await
        .context("preparing the hash read")?;
    let row = db
        .query_opt(&stmt, &[&id])
        .await
        .context("reading a hash")?;
    Ok(row.and_then(|r| r.get(0)))
}

pub async fn set_password_hash(
    db: &impl GenericClient,
    id: Uuid,
    hash: &str,
) -> anyhow::Result<()> {
    let stmt = db
        .prepare_cached("update users set password_hash = $2, updated_at = now() where id = $1")
        .await
        .context("preparing the password update")?;
    db.execute(&stmt, &[&id, &hash])
        .await
        .context("setting a password")?;
    Ok(())
}

pub async fn touch_last_sign_in(db: &impl GenericClient, id: Uuid) -> anyhow::Result<()> {
    let stmt = db
        .prepare_cached("update users set last_sign_in_at = now() where id = $1")
        .await
        .context("preparing the sign-in stamp")?;
    db.execute(&stmt, &[&id])
        .await
        .context("stamping the sign-in")?;
    Ok(())
}

/// The changes an admin may make (`None`: leave as is).
#[derive(Debug, Default, Clone)]
pub struct UserPatch {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub caps: Option<Vec<String>>,
    pub active: Option<bool>,
}

impl UserPatch {
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.role.is_none() && self.caps.is_none() && self.active.is_none()
    }
}

pub async fn update(
    db: &impl GenericClient,
    id: Uuid,
    p: &UserPatch,
) -> anyhow::Result<Option<User>> {
    let stmt = db
        .prepare_cached(&format!(
            "update users set name = coalesce($2, name), role = coalesce($3, role), \
             caps = coalesce($4, caps), active = coalesce($5, active), updated_at = now() \
             where id = $1 returning {COLUMNS}"
        ))
        .await
        .context("preparing the user update")?;
    let row = db
        .query_opt(
            &stmt,
            &[&id, &p.name, &p.role.map(Role::as_str), &p.caps, &p.active],
        )
        .await
        .context("updating a user")?;
    Ok(row.as_ref().map(user))
}

/// The ids of the active admins, locked for the rest of the transaction:
/// two admins demoting each other at once serialise here, and the second
/// sees the first's change (so the last active admin always stays).
pub async fn lock_active_admins(db: &impl GenericClient) -> anyhow::Result<Vec<Uuid>> {
    let stmt = db
        .prepare_cached(
            "select id from users where role = 'admin' and active order by id for update",
        )
        .await
        .context("preparing the admin lock")?;
    let rows = db
        .query(&stmt, &[])
        .await
        .context("locking the active admins")?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub async fn any_user(db: &impl GenericClient) -> anyhow::Result<bool> {
    let row = db
        .query_one("select exists (select 1 from users)", &[])
        .await
        .context("checking for users")?;
    Ok(row.get(0))
}

pub async fn any_admin(db: &impl GenericClient) -> anyhow::Result<bool> {
    let row = db
        .query_one(
            "select exists (select 1 from users where role = 'admin')",
            &[],
        )
        .await
        .context("checking for admins")?;
    Ok(row.get(0))
}

/// The caller a verified external identity is: its `users` row by e-mail,
/// created on first use (active, role from the token's groups, no caps, no
/// password). `None` when that user is deactivated.
pub async fn principal_for_external(
    db: &impl GenericClient,
    identity: &ExternalIdentity,
) -> anyhow::Result<Option<Principal>> {
    let existing = credentials_by_email(db, &identity.email).await?;
    let found = match existing {
        Some(c) => c.user,
        None => {
            let created = insert(
                db,
                &NewUser {
                    email: &identity.email,
                    name: &identity.name,
                    role: identity.role,
                    caps: &[],
                    origin: Origin::External,
                    password_hash: None,
                },
            )
            .await?;
            match created {
                Some(u) => {
                    crate::campaigns::audit::record(
                        db,
                        &crate::campaigns::audit::AuditEntry {
                            action: "crm.user.created",
                            actor: "system:identity_provider",
                            target_type: "user",
                            target_id: Some(u.id.to_string()),
                            details: serde_json::json!({
                                "origin": "external",
                                "role": u.role,
                            }),
                        },
                    )
                    .await?;
                    tracing::info!(user_id = %u.id, "user created on first external sign-in");
                    u
                }
                // Created concurrently by another request: read it.
                None => {
                    credentials_by_email(db, &identity.email)
                        .await?
                        .context("user vanished after a concurrent insert")?
                        .user
                }
            }
        }
    };
    Ok(found.active.then(|| found.principal()))
}
