//! The sign-in throttle (`sign_in_failures`): failed sign-ins counted per
//! account (the e-mail typed, whether or not such a user exists, so the
//! throttle says nothing about which e-mails are registered) and per source
//! address, in a fixed window. Reaching a limit locks that key until
//! the lockout ends; a locked key answers 429 with `Retry-After` before any
//! password is checked. A successful sign-in clears the account's count
//! (not the address's: one valid account must not reset an address that is
//! guessing at others).
//!
//! Keys hold SHA-256 hashes, never the e-mail or the address itself.

use super::secrets::sha256_hex;
use crate::db::GenericClient;
use anyhow::Context;

/// Limits: 5 failures per account or 20 per source address within 15
/// minutes lock that key for 15 minutes. Five is enough for typos and
/// caps-lock; twenty per address leaves room for an office behind one NAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    pub account_limit: i32,
    pub address_limit: i32,
    pub window_seconds: i64,
    pub lockout_seconds: i64,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            account_limit: 5,
            address_limit: 20,
            window_seconds: 15 * 60,
            lockout_seconds: 15 * 60,
        }
    }
}

/// The keys of one sign-in attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptKeys {
    pub account: String,
    pub address: String,
}

impl AttemptKeys {
    /// `email` as typed (trimmed and lower-cased here), `address` the source IP.
    pub fn new(email: &str, address: &str) -> Self {
        Self {
            account: format!(
                "account:{}",
                sha256_hex(email.trim().to_lowercase().as_bytes())
            ),
            address: format!("address:{}", sha256_hex(address.trim().as_bytes())),
        }
    }
}

/// Seconds until the longest lock on `keys` ends, if any is locked.
pub async fn locked_for(
    db: &impl GenericClient,
    keys: &AttemptKeys,
) -> anyhow::Result<Option<i64>> {
    let stmt = db
        .prepare_cached(
            "select max(ceil(extract(epoch from locked_until - now())))::bigint from sign_in_failures \
             where key in ($1, $2) and locked_until > now()",
        )
        .await
        .context("preparing the throttle check")?;
    let row = db
        .query_one(&stmt, &[&keys.account, &keys.address])
        .await
        .context("checking the sign-in throttle")?;
    Ok(row.get::<_, Option<i64>>(0).map(|s| s.max(1)))
}

/// Counts a failed attempt on both keys; answers the lock's seconds when
/// this failure reached a limit.
pub async fn record_failure(
    db: &impl GenericClient,
    keys: &AttemptKeys,
    policy: &ThrottlePolicy,
) -> anyhow::Result<Option<i64>> {
    // A window older than `window` starts over at 1.
    let stmt = db
        .prepare_cached(
            "insert into sign_in_failures as f (key, failures, window_start, locked_until) \
             values ($1, 1, now(), case when 1 >= $2 then now() + make_interval(secs => $4) end) \
             on conflict (key) do update set \
               failures = case when f.window_start < now() - make_interval(secs => $3) then 1 else f.failures + 1 end, \
               window_start = case when f.window_start < now() - make_interval(secs => $3) then now() else f.window_start end, \
               locked_until = case \
                 when (case when f.window_start < now() - make_interval(secs => $3) then 1 else f.failures + 1 end) >= $2 \
                 then now() + make_interval(secs => $4) else f.locked_until end \
             returning ceil(extract(epoch from locked_until - now()))::bigint",
        )
        .await
        .context("preparing the failure count")?;
    let window = policy.window_seconds as f64;
    let lockout = policy.lockout_seconds as f64;
    let mut locked = None;
    for (key, limit) in [
        (&keys.account, policy.account_limit),
        (&keys.address, policy.address_limit),
    ] {
        let row = db
            .query_one(&stmt, &[key, &limit, &window, &lockout])
            .await
            .context("counting a failed sign-in")?;
        if let Some(secs) = row.get::<_, Option<i64>>(0).filter(|s| *s > 0) {
            locked = Some(locked.map_or(secs, |l: i64| l.max(secs)));
        }
    }
    // Keep the table small: windows that ended a day ago count for nothing.
    db.execute(
        "delete from sign_in_failures where window_start < now() - interval '1 day' \
         and (locked_until is null or locked_until < now())",
        &[],
    )
    .await
    .context("pruning old sign-in failures")?;
    Ok(locked)
}

/// A successful sign-in: the account's count starts over.
pub async fn clear_account(db: &impl GenericClient, keys: &AttemptKeys) -> anyhow::Result<()> {
    let stmt = db
        .prepare_cached("delete from sign_in_failures where key = $1")
        .await
        .context("preparing the throttle clear")?;
    db.execute(&stmt, &[&keys.account])
        .await
        .context("clearing the account's failures")?;
    Ok(())
}
