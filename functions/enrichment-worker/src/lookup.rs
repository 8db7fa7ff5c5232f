//! Paid lookups, deduplicated across workers through `enrichment_lookups`:
//! the first worker to claim a key calls the provider and stores the answer;
//! the others wait for it (polling, up to the provider's timeout and a
//! margin) and reuse it within `LOOKUP_DEDUP_WINDOW_SECS`. A failed call
//! releases the claim, so the next attempt calls again. Without credentials
//! the local sink answers "not found" and nothing is stored.

use crate::{Deps, clients::DiretrixQuery};
use crm_domain::enrichment::{
    cpf::Cpf,
    sources::{DiretrixAnswer, SourceError, WorkAnswer, WorkPerson},
    store::{self, LookupClaim},
};
use serde_json::{Value, json};
use std::{future::Future, time::Duration};

/// Poll interval while another worker holds a lookup.
const POLL: Duration = Duration::from_millis(200);

/// A lookup that failed: the provider's answer, or our own infrastructure.
#[derive(Debug)]
pub enum LookupError {
    Source(SourceError),
    Db(anyhow::Error),
}

impl From<SourceError> for LookupError {
    fn from(e: SourceError) -> Self {
        LookupError::Source(e)
    }
}

async fn deduped<F, Fut>(
    deps: &Deps,
    key: &str,
    timeout: Duration,
    call: F,
) -> Result<Value, LookupError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Value, SourceError>>,
{
    // The claim outlives one call (timeout) plus pacing and a margin; a
    // holder that died is taken over after it.
    let lease = timeout * 2 + Duration::from_secs(10);
    // Never wait past the invocation's deadline: the job is retried instead.
    let mut give_up_at = tokio::time::Instant::now() + lease;
    if let Some(deadline) = deps.deadline {
        give_up_at = give_up_at.min(deadline);
    }
    let mut call = Some(call);
    loop {
        // A paid call that could not finish before the deadline is not started.
        if !deps.has_time_for(timeout) {
            return Err(SourceError::Retry(
                "not enough time left in this invocation for the lookup".into(),
            )
            .into());
        }
        let claim = {
            let client = deps
                .pool
                .get()
                .await
                .map_err(|e| LookupError::Db(e.into()))?;
            store::claim_lookup(&client, key, lease, deps.config.dedup_window)
                .await
                .map_err(LookupError::Db)?
        };
        match claim {
            LookupClaim::Done(v) => return Ok(v),
            LookupClaim::Mine => {
                let call = call.take().expect("claimed once");
                let answer = call().await;
                let client = deps
                    .pool
                    .get()
                    .await
                    .map_err(|e| LookupError::Db(e.into()))?;
                return match answer {
                    Ok(v) => {
                        store::complete_lookup(&client, key, &v, deps.config.dedup_window)
                            .await
                            .map_err(LookupError::Db)?;
                        Ok(v)
                    }
                    Err(e) => {
                        store::release_lookup(&client, key)
                            .await
                            .map_err(LookupError::Db)?;
                        Err(e.into())
                    }
                };
            }
            LookupClaim::Busy if tokio::time::Instant::now() >= give_up_at => {
                return Err(SourceError::Retry(
                    "the same lookup is still running in another worker".into(),
                )
                .into());
            }
            LookupClaim::Busy => tokio::time::sleep(POLL).await,
        }
    }
}

/// The `enrichment_lookups` key of a datum: `<kind>:<sha256 hex of
/// "<kind>:<datum>">`, so the cache never holds a phone, e-mail or CPF in clear.
pub fn cache_key(kind: &str, datum: &str) -> String {
    format!(
        "{kind}:{}",
        crm_domain::enrichment::store::sha256_hex(&format!("{kind}:{datum}"))
    )
}

/// Who owns a phone (national digits) or an e-mail, per Diretrix.
/// `Ok(None)`: the local sink (not configured).
pub async fn diretrix(
    deps: &Deps,
    q: DiretrixQuery<'_>,
    e164: Option<&str>,
) -> Result<Option<DiretrixAnswer>, LookupError> {
    let Some(client) = deps.diretrix.as_ref() else {
        return Ok(None);
    };
    let key = match q {
        DiretrixQuery::Phone(_) => cache_key("diretrix:phone", e164.unwrap_or_default()),
        DiretrixQuery::Email(e) => cache_key("diretrix:email", e),
    };
    let timeout = deps.config.diretrix_call.timeout;
    let v = deduped(deps, &key, timeout, || async move {
        let answer = client.lookup(q).await?;
        Ok(serde_json::to_value(answer).expect("answers serialise"))
    })
    .await?;
    serde_json::from_value(v).map(Some).map_err(|_| {
        LookupError::Db(anyhow::anyhow!(
            "a stored Diretrix answer does not read back"
        ))
    })
}

/// A CPF's data per the Work API, with the raw answer. `Ok(None)`: the local
/// sink; `Ok(Some((None, _)))`: the API knows nothing about it.
pub async fn work(
    deps: &Deps,
    cpf: &Cpf,
) -> Result<Option<(Option<WorkPerson>, Value)>, LookupError> {
    let Some(client) = deps.work.as_ref() else {
        return Ok(None);
    };
    let key = cache_key("work:cpf", cpf.as_str());
    let v = deduped(deps, &key, deps.config.work_call.timeout, || async move {
        Ok(match client.lookup(cpf).await? {
            (WorkAnswer::Found(p), raw) => json!({"found": true, "person": p, "payload": raw}),
            (WorkAnswer::NotFound, _) => json!({"found": false}),
        })
    })
    .await?;
    if v["found"] != Value::Bool(true) {
        return Ok(Some((None, Value::Null)));
    }
    let person: WorkPerson = serde_json::from_value(v["person"].clone()).map_err(|_| {
        LookupError::Db(anyhow::anyhow!(
            "a stored Work API answer does not read back"
        ))
    })?;
    // Results stay paired with the CPF they were asked for.
    if &person.cpf != cpf {
        return Err(LookupError::Db(anyhow::anyhow!(
            "a stored Work API answer names another CPF"
        )));
    }
    Ok(Some((Some(person), v["payload"].clone())))
}
