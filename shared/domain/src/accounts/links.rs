//! One-time set-password links (`password_tokens`): an invitation or a
//! reset. A link works once, until it expires (72 hours), and only while it
//! is the user's newest: issuing a new one supersedes the older ones.

use super::secrets::OpaqueToken;
use crate::db::GenericClient;
use anyhow::Context;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// How long a set-password link stays valid.
pub const LINK_LIFETIME_HOURS: i64 = 72;

/// A link just issued: the token goes into the URL, only its hash is stored.
#[derive(Debug)]
pub struct IssuedLink {
    pub token: OpaqueToken,
    pub expires_at: DateTime<Utc>,
}

/// Issues a link for `user_id`, superseding every older unused one. Call it
/// in a transaction that has locked the user's row
/// ([`super::users::get_for_update`]), so two concurrent issues leave one live link.
pub async fn issue(db: &impl GenericClient, user_id: Uuid) -> anyhow::Result<IssuedLink> {
    let supersede = db
        .prepare_cached(
            "update password_tokens set superseded_at = now() \
             where user_id = $1 and used_at is null and superseded_at is null",
        )
        .await
        .context("preparing the link supersede")?;
    db.execute(&supersede, &[&user_id])
        .await
        .context("superseding older links")?;
    let token = OpaqueToken::generate();
    let insert = db
        .prepare_cached(
            "insert into password_tokens (user_id, token_hash, expires_at) \
             values ($1, $2, now() + make_interval(hours => $3)) returning expires_at",
        )
        .await
        .context("preparing the link insert")?;
    let row = db
        .query_one(
            &insert,
            &[&user_id, &token.hash(), &(LINK_LIFETIME_HOURS as i32)],
        )
        .await
        .context("issuing a set-password link")?;
    Ok(IssuedLink {
        token,
        expires_at: row.get(0),
    })
}

/// Uses a link: marks it used and answers its (active) user, or `None` when
/// it is unknown, used, superseded, expired, or its user is deactivated.
/// One statement, so two concurrent uses cannot both succeed.
pub async fn redeem(db: &impl GenericClient, token: &OpaqueToken) -> anyhow::Result<Option<Uuid>> {
    let stmt = db
        .prepare_cached(
            "update password_tokens t set used_at = now() from users u \
             where t.token_hash = $1 and t.used_at is null and t.superseded_at is null \
               and t.expires_at > now() and u.id = t.user_id and u.active \
             returning t.user_id",
        )
        .await
        .context("preparing the link use")?;
    let row = db
        .query_opt(&stmt, &[&token.hash()])
        .await
        .context("using a set-password link")?;
    Ok(row.map(|r| r.get(0)))
}
