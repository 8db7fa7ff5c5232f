//! Sign-in sessions and their refresh tokens. A session is the chain of
//! refresh tokens issued since one sign-in; each refresh marks the presented
//! token used and issues its successor. Presenting a token that was already
//! used means two parties hold the chain (a copy was stolen, or a client
//! misbehaves): the whole session is revoked (`reuse_detected`) and both
//! must sign in again.

use super::{
    secrets::OpaqueToken,
    users::{self, User},
};
use crate::db::GenericClient;
use anyhow::Context;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Why a session ended (the `revoked_reason` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Logout,
    ReuseDetected,
    SignedOutEverywhere,
    Deactivated,
    PasswordChanged,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Logout => "logout",
            EndReason::ReuseDetected => "reuse_detected",
            EndReason::SignedOutEverywhere => "signed_out_everywhere",
            EndReason::Deactivated => "deactivated",
            EndReason::PasswordChanged => "password_changed",
        }
    }
}

/// A session's current refresh token, to hand to the client.
#[derive(Debug)]
pub struct Issued {
    pub session_id: Uuid,
    pub refresh: OpaqueToken,
    pub expires_at: DateTime<Utc>,
}

/// Starts a session for `user_id` lasting `lifetime_seconds` (absolute: refreshes do not extend it).
pub async fn start(
    db: &impl GenericClient,
    user_id: Uuid,
    lifetime_seconds: i64,
) -> anyhow::Result<Issued> {
    let stmt = db
        .prepare_cached(
            "insert into sessions (user_id, expires_at) \
             values ($1, now() + make_interval(secs => $2)) returning id, expires_at",
        )
        .await
        .context("preparing the session insert")?;
    let row = db
        .query_one(&stmt, &[&user_id, &(lifetime_seconds as f64)])
        .await
        .context("starting a session")?;
    let session_id: Uuid = row.get(0);
    let refresh = add_token(db, session_id).await?;
    Ok(Issued {
        session_id,
        refresh,
        expires_at: row.get(1),
    })
}

async fn add_token(db: &impl GenericClient, session_id: Uuid) -> anyhow::Result<OpaqueToken> {
    let token = OpaqueToken::generate();
    let stmt = db
        .prepare_cached("insert into refresh_tokens (token_hash, session_id) values ($1, $2)")
        .await
        .context("preparing the refresh token insert")?;
    db.execute(&stmt, &[&token.hash(), &session_id])
        .await
        .context("storing a refresh token")?;
    Ok(token)
}

/// What presenting a refresh token did.
#[derive(Debug)]
pub enum Rotation {
    /// Marked used; here is its successor and the user as the row is now.
    Rotated { issued: Issued, user: User },
    /// Already used before: the session is now revoked.
    ReuseDetected,
    /// The session was revoked, expired, or its user deactivated (then revoked now).
    Ended,
    /// No such token.
    Unknown,
}

/// Rotates `token`. Run it in a transaction: it locks the token and its
/// session, so two concurrent uses of one token serialise and the second
/// counts as reuse.
pub async fn rotate(db: &impl GenericClient, token: &OpaqueToken) -> anyhow::Result<Rotation> {
    let stmt = db
        .prepare_cached(
            "select t.session_id, t.used_at is not null, s.revoked_at is not null, \
                    s.expires_at <= now(), s.user_id, s.expires_at \
             from refresh_tokens t join sessions s on s.id = t.session_id \
             where t.token_hash = $1 for update of t, s",
        )
        .await
        .context("preparing the refresh lookup")?;
    let Some(row) = db
        .query_opt(&stmt, &[&token.hash()])
        .await
        .context("looking up a refresh token")?
    else {
        return Ok(Rotation::Unknown);
    };
    let (session_id, used, revoked, expired, user_id, expires_at): (
        Uuid,
        bool,
        bool,
        bool,
        Uuid,
        DateTime<Utc>,
    ) = (
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        row.get(5),
    );
    if revoked || expired {
        return Ok(Rotation::Ended);
    }
    if used {
        end(db, session_id, EndReason::ReuseDetected).await?;
        return Ok(Rotation::ReuseDetected);
    }
    let user = users::get(db, user_id).await?.filter(|u| u.active);
    let Some(user) = user else {
        end(db, session_id, EndReason::Deactivated).await?;
        return Ok(Rotation::Ended);
    };
    let mark = db
        .prepare_cached("update refresh_tokens set used_at = now() where token_hash = $1")
        .await
        .context("preparing the refresh mark")?;
    db.execute(&mark, &[&token.hash()])
        .await
        .context("marking a refresh token used")?;
    let touch = db
        .prepare_cached("update sessions set last_used_at = now() where id = $1")
        .await
        .context("preparing the session touch")?;
    db.execute(&touch, &[&session_id])
        .await
        .context("touching a session")?;
    let refresh = add_token(db, session_id).await?;
    Ok(Rotation::Rotated {
        issued: Issued {
            session_id,
            refresh,
            expires_at,
        },
        user,
    })
}

/// The session a refresh token belongs to (for sign-out), if any.
pub async fn session_of(
    db: &impl GenericClient,
    token: &OpaqueToken,
) -> anyhow::Result<Option<Uuid>> {
    let stmt = db
        .prepare_cached("select session_id from refresh_tokens where token_hash = $1")
        .await
        .context("preparing the session lookup")?;
    let row = db
        .query_opt(&stmt, &[&token.hash()])
        .await
        .context("finding a session")?;
    Ok(row.map(|r| r.get(0)))
}

/// Revokes one session (a no-op when already revoked).
pub async fn end(
    db: &impl GenericClient,
    session_id: Uuid,
    reason: EndReason,
) -> anyhow::Result<bool> {
    let stmt = db
        .prepare_cached(
            "update sessions set revoked_at = now(), revoked_reason = $2 \
             where id = $1 and revoked_at is null",
        )
        .await
        .context("preparing the session end")?;
    let n = db
        .execute(&stmt, &[&session_id, &reason.as_str()])
        .await
        .context("ending a session")?;
    Ok(n > 0)
}

/// Revokes every live session of `user_id` except `keep`; answers how many.
pub async fn end_all(
    db: &impl GenericClient,
    user_id: Uuid,
    reason: EndReason,
    keep: Option<Uuid>,
) -> anyhow::Result<u64> {
    let stmt = db
        .prepare_cached(
            "update sessions set revoked_at = now(), revoked_reason = $2 \
             where user_id = $1 and revoked_at is null and ($3::uuid is null or id <> $3)",
        )
        .await
        .context("preparing the sessions end")?;
    db.execute(&stmt, &[&user_id, &reason.as_str(), &keep])
        .await
        .context("ending a user's sessions")
}
