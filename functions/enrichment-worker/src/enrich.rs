//! `on_create_lead` / `on_update_lead`: validate → look up (Diretrix, both
//! data at once) → who → Work API per CPF → note (at most once) → parties,
//! links and the outcome in one transaction.

use crate::{
    Deps, Step,
    clients::{DiretrixQuery, PostOutcome},
    lookup::{self, LookupError},
};
use crm_domain::{
    enrichment::{
        cpf::Cpf,
        identity::Identity,
        note::{self, Person, SourceState},
        sources::{DiretrixAnswer, SourceError, WorkPerson},
        store::{self, Finish, Lead, NoteTurn},
        validate::{self, FieldCheck},
    },
    jobs::EnrichLead,
};
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

/// A person to store: CPF, how it was matched, and the Work data with its raw answer.
type Found = (Cpf, &'static str, Option<(WorkPerson, Value)>);

/// One contact datum's lookup, as the rest of the flow needs it.
struct Looked {
    state: SourceState,
    answer: Option<DiretrixAnswer>,
}

/// Turns a lookup result into state, or the step that ends the flow now.
fn looked(
    r: Option<Result<Option<DiretrixAnswer>, LookupError>>,
    not_used: SourceState,
    what: &str,
    gaps: &mut Vec<String>,
    info: &mut Vec<String>,
) -> Result<Looked, anyhow::Result<Step>> {
    match r {
        None => Ok(Looked {
            state: not_used,
            answer: None,
        }),
        Some(Ok(None)) => {
            info.push(format!(
                "{what}: Diretrix not configured (local sink): not found"
            ));
            Ok(Looked {
                state: SourceState::NotFound,
                answer: None,
            })
        }
        Some(Ok(Some(a))) => Ok(Looked {
            state: if a.owners.is_empty() {
                SourceState::NotFound
            } else {
                SourceState::Found
            },
            answer: Some(a),
        }),
        Some(Err(LookupError::Source(SourceError::Permanent(why)))) => {
            gaps.push(format!("{what} lookup failed: {why}"));
            Ok(Looked {
                state: SourceState::Failed,
                answer: None,
            })
        }
        Some(Err(LookupError::Source(SourceError::Retry(why)))) => Err(Ok(Step::Retry(why))),
        Some(Err(LookupError::Db(e))) => Err(Err(e)),
    }
}

fn english(s: SourceState) -> &'static str {
    match s {
        SourceState::Found => "found",
        SourceState::NotFound => "not found",
        SourceState::Invalid => "invalid, not looked up",
        SourceState::NotProvided => "not provided",
        SourceState::Failed => "lookup failed",
    }
}

fn not_used<T>(r: &Result<T, String>) -> SourceState {
    match r {
        Err(why) if why == "not provided" => SourceState::NotProvided,
        _ => SourceState::Invalid,
    }
}

async fn finish(deps: &Deps, job: &EnrichLead, run: Uuid, f: Finish<'_>) -> anyhow::Result<Step> {
    let client = deps.pool.get().await?;
    store::finish(&client, run, job.event_id, &f).await?;
    tracing::info!(
        status = f.status,
        identity = f.identity,
        "enrichment run finished"
    );
    Ok(Step::Finished)
}

pub(crate) async fn enrich(
    job: &EnrichLead,
    lead: &Lead,
    run: Uuid,
    is_update: bool,
    deps: &Deps,
) -> anyhow::Result<Step> {
    if is_update {
        let last = {
            let client = deps.pool.get().await?;
            store::last_enriched_hash(&client, &lead.id, run).await?
        };
        if last.is_some_and(|(_, hash)| hash == lead.contact_hash) {
            let reasons = [
                "contact data (name, e-mail, phone) unchanged since the last enrichment"
                    .to_string(),
            ];
            return finish(
                deps,
                job,
                run,
                Finish {
                    status: "skipped",
                    identity: None,
                    validation: None,
                    reasons: &reasons,
                    error: Some(&reasons[0]),
                },
            )
            .await;
        }
    }

    // Validation: an invalid datum is not looked up; its reason is recorded.
    // The first valid of phone → phone2 → phone_global (the numbers the
    // contact hash covers); none valid: the first one's reason.
    let phone = {
        let mut tried = [
            lead.customer_phone.as_deref(),
            lead.customer_phone2.as_deref(),
            lead.customer_phone_global.as_deref(),
        ]
        .map(validate::phone);
        match tried.iter().position(Result::is_ok) {
            Some(i) => std::mem::replace(&mut tried[i], Err(String::new())),
            None => {
                let first = tried
                    .iter()
                    .position(|r| !matches!(r, Err(why) if why == "not provided"))
                    .unwrap_or(0);
                std::mem::replace(&mut tried[first], Err(String::new()))
            }
        }
    };
    let email = validate::email(lead.customer_email.as_deref());
    let validation = json!({"phone": FieldCheck::of(&phone), "email": FieldCheck::of(&email)});
    let (mut gaps, mut info) = (Vec::new(), Vec::new());
    for (what, r) in [
        ("phone", phone.as_ref().err()),
        ("e-mail", email.as_ref().err()),
    ] {
        match r {
            Some(why) if why != "not provided" => gaps.push(format!("{what} not used: {why}")),
            _ => {}
        }
    }
    if let (Err(p), Err(e)) = (&phone, &email) {
        let why = format!("no valid phone or e-mail to look up (phone: {p}; e-mail: {e})");
        return finish(
            deps,
            job,
            run,
            Finish {
                status: "failed",
                identity: None,
                validation: Some(&validation),
                reasons: std::slice::from_ref(&why),
                error: Some(&why),
            },
        )
        .await;
    }

    // Both lookups at once, each deduplicated and bounded by its timeout.
    let phone_lookup = async {
        match &phone {
            Ok(p) => Some(
                lookup::diretrix(deps, DiretrixQuery::Phone(p.national()), Some(p.e164())).await,
            ),
            Err(_) => None,
        }
    };
    let email_lookup = async {
        match &email {
            Ok(e) => Some(lookup::diretrix(deps, DiretrixQuery::Email(e.as_str()), None).await),
            Err(_) => None,
        }
    };
    let (by_phone, by_email) = tokio::join!(phone_lookup, email_lookup);
    let by_phone = match looked(by_phone, not_used(&phone), "phone", &mut gaps, &mut info) {
        Ok(l) => l,
        Err(step) => return step,
    };
    let by_email = match looked(by_email, not_used(&email), "e-mail", &mut gaps, &mut info) {
        Ok(l) => l,
        Err(step) => return step,
    };
    let identity = Identity::resolve(by_phone.answer.as_ref(), by_email.answer.as_ref());
    if identity == Identity::NotFound {
        let mut why = format!(
            "no CPF found (phone: {}; e-mail: {})",
            english(by_phone.state),
            english(by_email.state)
        );
        // Say when Diretrix did answer CPFs, but none passed the check digits.
        let failing: u32 = [&by_phone.answer, &by_email.answer]
            .into_iter()
            .flatten()
            .map(|a| a.invalid_cpfs)
            .sum();
        if failing > 0 {
            why.push_str(&format!(
                "; Diretrix returned {failing} CPF(s) that fail the check digits"
            ));
        }
        let mut reasons = gaps.clone();
        reasons.extend(info);
        reasons.push(why.clone());
        return finish(
            deps,
            job,
            run,
            Finish {
                status: "failed",
                identity: Some(identity.kind()),
                validation: Some(&validation),
                reasons: &reasons,
                error: Some(&why),
            },
        )
        .await;
    }

    // The Work API, one CPF at a time (it is slow and paced).
    let mut people: Vec<Found> = Vec::new();
    for (cpf, by) in identity.people() {
        let data = match lookup::work(deps, cpf).await {
            Ok(Some((Some(p), raw))) => Some((p, raw)),
            Ok(Some((None, _))) => {
                gaps.push(format!("Work API has no data for the CPF found by {by}"));
                None
            }
            Ok(None) => {
                info.push("Work API not configured (local sink): no data".into());
                None
            }
            Err(LookupError::Source(SourceError::Retry(why))) => return Ok(Step::Retry(why)),
            Err(LookupError::Source(SourceError::Permanent(why))) => {
                gaps.push(format!("Work API ({by}): {why}"));
                None
            }
            Err(LookupError::Db(e)) => return Err(e),
        };
        people.push((cpf.clone(), by, data));
    }

    let owners: Vec<_> = [&by_phone.answer, &by_email.answer]
        .into_iter()
        .flatten()
        .flat_map(|a| a.owners.iter())
        .collect();
    let text = note::compose(&identity, by_phone.state, by_email.state, |c| Person {
        cpf: c,
        work: people
            .iter()
            .find(|(p, ..)| p == c)
            .and_then(|(.., d)| d.as_ref().map(|(w, _)| w)),
        diretrix_name: owners
            .iter()
            .find(|o| &o.cpf == c)
            .and_then(|o| o.nome.as_deref()),
    })
    .expect("somebody was found");

    match post_note(lead, run, &text, deps).await? {
        NotePosted::Retry(why) => return Ok(Step::Retry(why)),
        NotePosted::Gap(why) => gaps.push(why),
        NotePosted::Info(why) => info.push(why),
        NotePosted::Ok => {}
    }

    // Parties, links and the outcome: one transaction.
    let status = if gaps.is_empty() {
        "completed"
    } else {
        "partial"
    };
    let mut reasons = gaps.clone();
    reasons.extend(info);
    let error = (!gaps.is_empty()).then(|| gaps.join("; "));
    let mut client = deps.pool.get().await?;
    let tx = client.transaction().await?;
    for (_, by, data) in &people {
        if let Some((person, raw)) = data {
            let party = store::upsert_party(&tx, person, raw).await?;
            store::link_party(&tx, &lead.id, party, by, run).await?;
        }
    }
    store::finish(
        &tx,
        run,
        job.event_id,
        &Finish {
            status,
            identity: Some(identity.kind()),
            validation: Some(&validation),
            reasons: &reasons,
            error: error.as_deref(),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(
        status,
        identity = identity.kind(),
        people = people.len(),
        "enrichment run finished"
    );
    Ok(Step::Finished)
}

enum NotePosted {
    Ok,
    /// Not posted or uncertain: the run is partial.
    Gap(String),
    /// Worth recording, not a gap (local sink, posted earlier).
    Info(String),
    Retry(String),
}

/// Posts the note at most once: the intent is committed before the call and
/// the result right after.
async fn post_note(lead: &Lead, run: Uuid, text: &str, deps: &Deps) -> anyhow::Result<NotePosted> {
    let Some(c2s) = deps.c2s.as_ref() else {
        let client = deps.pool.get().await?;
        store::note_local(&client, &lead.id, run, text).await?;
        tracing::warn!("LOCAL SINK: enrichment note recorded, not posted to C2S");
        return Ok(NotePosted::Info(
            "note recorded by the local sink (C2S not configured), not posted".into(),
        ));
    };
    // Never start the post (nor record its intent) without the time to
    // finish it and record the result: retried in the next invocation.
    if !deps.has_time_for(deps.config.c2s_call.timeout + Duration::from_secs(5)) {
        return Ok(NotePosted::Retry(
            "not enough time left in this invocation to post the note".into(),
        ));
    }
    let lease = deps.config.c2s_call.timeout + Duration::from_secs(30);
    let turn = {
        let client = deps.pool.get().await?;
        store::note_intent(&client, &lead.id, run, text, lease).await?
    };
    // A retry posts the text its run stored first, not what it composed now.
    let (note, text) = match turn {
        NoteTurn::Post { id, body } => (id, body),
        NoteTurn::Done => {
            return Ok(NotePosted::Info(
                "note already posted earlier: not posted again".into(),
            ));
        }
        NoteTurn::Uncertain => {
            return Ok(NotePosted::Gap(
                "note post uncertain: an earlier attempt's outcome is unknown; flagged, not repeated".into(),
            ));
        }
        NoteTurn::Busy => {
            return Ok(NotePosted::Retry(
                "the note is being posted by another worker".into(),
            ));
        }
    };
    let outcome = c2s.post_message(&lead.id, &text).await;
    let client = deps.pool.get().await?;
    Ok(match outcome {
        PostOutcome::Posted { status } => {
            store::note_result(&client, note, "posted", Some(i32::from(status)), None).await?;
            tracing::info!(note_id = %note, http_status = status, "note posted to C2S");
            NotePosted::Ok
        }
        PostOutcome::Failed {
            status,
            retry,
            reason,
        } => {
            store::note_result(
                &client,
                note,
                "failed",
                status.map(i32::from),
                Some(&reason),
            )
            .await?;
            tracing::warn!(note_id = %note, http_status = status, retry, "note post failed");
            if retry {
                NotePosted::Retry(reason)
            } else {
                NotePosted::Gap(format!("note not posted: {reason}"))
            }
        }
        PostOutcome::Uncertain { status, reason } => {
            let why = format!("note post uncertain ({reason}): flagged, not repeated");
            store::note_result(
                &client,
                note,
                "uncertain",
                status.map(i32::from),
                Some(&why),
            )
            .await?;
            tracing::warn!(note_id = %note, "note post uncertain: flagged");
            NotePosted::Gap(why)
        }
    })
}
