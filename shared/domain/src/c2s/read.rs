//! The Contact2Sale read API (issue 12 §2): leads with their last event,
//! enrichment outcome and note (`GET /api/v1/c2s/leads`), one lead with
//! everything the worker did for it (`GET /api/v1/c2s/leads/{id}`), and the
//! C2S side of a CRM contact (`GET /crm/contacts/{id}/c2s`). Typed answers;
//! statuses read from the database are parsed into enums (an unknown value
//! is our fault, a 500).

use super::link::{self, LeadContactData, LinkedBy};
use crate::{
    crm::{ApiError, cursor::KeyCursor, input},
    db::GenericClient,
};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

/// A closed set of database strings as an enum (serialised as the same string).
macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
        pub enum $name { $($(#[$vm])* #[serde(rename = $text)] $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(raw: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == raw)
            }

            #[allow(dead_code)]
            fn from_db(raw: &str) -> Result<Self, ApiError> {
                Self::parse(raw).ok_or_else(|| {
                    ApiError::Unexpected(anyhow::anyhow!(
                        concat!("unknown ", stringify!($name), " {:?} in the database"),
                        raw
                    ))
                })
            }
        }
    };
}

text_enum!(
    /// A C2S element's `webhook_events.status` (rejected elements are not events of a lead).
    EventStatus {
        Received = "received",
        Completed = "completed",
        Partial = "partial",
        Failed = "failed",
        Skipped = "skipped",
    }
);

text_enum!(
    HookActionText {
        CreateLead = "on_create_lead",
        UpdateLead = "on_update_lead",
        CloseLead = "on_close_lead",
    }
);

text_enum!(
    /// `enrichment_runs.status`.
    RunStatus {
        Running = "running",
        Completed = "completed",
        Partial = "partial",
        Failed = "failed",
        Skipped = "skipped",
    }
);

text_enum!(
    /// The same-person verdict of a run (`enrichment_runs.identity`).
    Verdict {
        SamePerson = "same_person",
        DifferentPeople = "different_people",
        PhoneOnly = "phone_only",
        EmailOnly = "email_only",
        NotFound = "not_found",
    }
);

text_enum!(
    /// `enrichment_notes.status`.
    NoteStatus {
        Pending = "pending",
        Posted = "posted",
        Failed = "failed",
        Uncertain = "uncertain",
        Local = "local",
    }
);

text_enum!(
    /// `lead_parties.matched_by`.
    MatchedBy {
        PhoneAndEmail = "phone_and_email",
        Phone = "phone",
        Email = "email",
    }
);

fn parse_opt<T>(
    raw: Option<String>,
    f: fn(&str) -> Result<T, ApiError>,
) -> Result<Option<T>, ApiError> {
    raw.as_deref().map(f).transpose()
}

fn dbe(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> ApiError {
    move |e| ApiError::from_db(e, context)
}

/// One `webhook_events` row of a lead (no payload, no key).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeadEventOut {
    pub event_id: Uuid,
    pub hook_action: Option<HookActionText>,
    pub status: EventStatus,
    pub error: Option<String>,
    pub error_code: Option<String>,
    pub attempts: i32,
    pub received_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i32>,
}

const EVENT_COLUMNS: &str = "e.id, e.event_type, e.status, e.error, e.error_code, e.attempts, \
     e.received_at, e.processed_at, e.duration_ms";

fn event_at(row: &Row, i: usize) -> Result<Option<LeadEventOut>, ApiError> {
    let Some(id) = row.get::<_, Option<Uuid>>(i) else {
        return Ok(None);
    };
    Ok(Some(LeadEventOut {
        event_id: id,
        hook_action: row
            .get::<_, Option<&str>>(i + 1)
            .and_then(HookActionText::parse),
        status: EventStatus::from_db(row.get(i + 2))?,
        error: row.get(i + 3),
        error_code: row.get(i + 4),
        attempts: row.get(i + 5),
        received_at: row.get(i + 6),
        processed_at: row.get(i + 7),
        duration_ms: row.get(i + 8),
    }))
}

/// A run's outcome, as the list shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnrichmentOutcome {
    pub run_id: Uuid,
    pub status: RunStatus,
    pub identity: Option<Verdict>,
    pub attempts: i32,
    pub error: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
}

const RUN_SUMMARY_COLUMNS: &str = "r.id, r.status, r.identity, r.attempts, r.error, r.finished_at";

fn outcome_at(row: &Row, i: usize) -> Result<Option<EnrichmentOutcome>, ApiError> {
    let Some(id) = row.get::<_, Option<Uuid>>(i) else {
        return Ok(None);
    };
    Ok(Some(EnrichmentOutcome {
        run_id: id,
        status: RunStatus::from_db(row.get(i + 1))?,
        identity: parse_opt(row.get(i + 2), Verdict::from_db)?,
        attempts: row.get(i + 3),
        error: row.get(i + 4),
        finished_at: row.get(i + 5),
    }))
}

/// Whether the lead's latest note reached C2S, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NoteSummary {
    pub posted: bool,
    /// `None` when no note was written for the lead.
    pub status: Option<NoteStatus>,
    /// Why it was not posted (`None` when posted).
    pub why: Option<String>,
    pub posted_at: Option<DateTime<Utc>>,
}

impl NoteSummary {
    /// From the latest note row (if any) and the latest run (if any).
    fn new(
        note: Option<(
            NoteStatus,
            Option<String>,
            Option<i32>,
            Option<DateTime<Utc>>,
        )>,
        run: Option<&EnrichmentOutcome>,
    ) -> Self {
        let Some((status, error, http, posted_at)) = note else {
            let why = match run {
                None => "not enriched yet".to_string(),
                Some(r) if r.status == RunStatus::Running => "enrichment still running".into(),
                Some(r) => r
                    .error
                    .clone()
                    .unwrap_or_else(|| "no note was composed for this lead".into()),
            };
            return Self {
                posted: false,
                status: None,
                why: Some(why),
                posted_at: None,
            };
        };
        let why =
            match status {
                NoteStatus::Posted => None,
                NoteStatus::Local => {
                    Some("recorded by the local sink (no C2S credentials), not posted".into())
                }
                NoteStatus::Pending => Some("being posted now".into()),
                NoteStatus::Failed => Some(error.unwrap_or_else(|| match http {
                    Some(code) => format!("C2S refused it (HTTP {code})"),
                    None => "C2S could not be reached".into(),
                })),
                NoteStatus::Uncertain => Some(error.unwrap_or_else(|| {
                    "the outcome of the post is unknown; not posted again".into()
                })),
            };
        Self {
            posted: status == NoteStatus::Posted,
            status: Some(status),
            why,
            posted_at,
        }
    }
}

/// One row of the leads list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeadSummary {
    pub lead_id: String,
    pub customer_name: Option<String>,
    pub seller_id: Option<String>,
    pub seller_name: Option<String>,
    /// C2S's own lead status (`lead_status.alias` / `.name`).
    pub lead_status_alias: Option<String>,
    pub lead_status_name: Option<String>,
    /// The hook action that last updated the lead.
    pub hook_action: HookActionText,
    /// The last event's status (`null` before any): what `?status=` filters on.
    pub status: Option<EventStatus>,
    pub last_event: Option<LeadEventOut>,
    /// The latest enrichment run's outcome.
    pub enrichment: Option<EnrichmentOutcome>,
    pub note: NoteSummary,
    pub c2s_updated_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeadPage {
    pub leads: Vec<LeadSummary>,
    pub next_cursor: Option<String>,
    pub limit: i64,
}

/// `GET /api/v1/c2s/leads?status=&cursor=&limit=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadQuery {
    pub status: Option<EventStatus>,
    pub cursor: Option<KeyCursor>,
    pub limit: i64,
}

pub const LEADS_DEFAULT_LIMIT: i64 = 50;
pub const LEADS_MAX_LIMIT: i64 = 200;

impl LeadQuery {
    pub fn parse(
        status: Option<&str>,
        cursor: Option<&str>,
        limit: Option<&str>,
    ) -> Result<Self, ApiError> {
        let status = status
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                EventStatus::parse(s).ok_or_else(|| {
                    ApiError::validation(
                        "status",
                        "must be one of received, completed, partial, failed, skipped",
                    )
                })
            })
            .transpose()?;
        Ok(Self {
            status,
            cursor: cursor
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(|c| KeyCursor::decode(c, KeyCursor::C2S_LEADS))
                .transpose()?,
            limit: input::limit(limit, LEADS_DEFAULT_LIMIT, LEADS_MAX_LIMIT)?,
        })
    }
}

/// The last event, the last run and the last note of each lead (`l`).
const LAST_OF_LEAD: &str = "\
    left join lateral (select {events} from webhook_events e \
        where e.source = 'c2s' and e.subject_id = l.id and e.status <> 'rejected' \
        order by e.received_at desc, e.id desc limit 1) e on true \
    left join lateral (select {runs} from enrichment_runs r where r.lead_id = l.id \
        order by r.started_at desc, r.id desc limit 1) r on true \
    left join lateral (select n.status, n.error, n.http_status, n.posted_at from enrichment_notes n \
        where n.lead_id = l.id order by n.created_at desc, n.id desc limit 1) n on true";

fn last_of_lead() -> String {
    LAST_OF_LEAD
        .replace("{events}", EVENT_COLUMNS)
        .replace("{runs}", RUN_SUMMARY_COLUMNS)
}

const SUMMARY_COLUMNS: &str = "l.id, l.customer_name, l.seller_id, l.seller_name, l.status_alias, \
     l.status_name, l.last_hook_action, l.c2s_updated_at, l.closed_at, l.created_at";

/// Index of the first column after [`SUMMARY_COLUMNS`].
const AFTER_SUMMARY: usize = 10;

fn summary(row: &Row) -> Result<LeadSummary, ApiError> {
    let last_event = event_at(row, AFTER_SUMMARY)?;
    let enrichment = outcome_at(row, AFTER_SUMMARY + 9)?;
    let n = AFTER_SUMMARY + 15;
    let note = parse_opt(row.get(n), NoteStatus::from_db)?
        .map(|s| (s, row.get(n + 1), row.get(n + 2), row.get(n + 3)));
    Ok(LeadSummary {
        lead_id: row.get(0),
        customer_name: row.get(1),
        seller_id: row.get(2),
        seller_name: row.get(3),
        lead_status_alias: row.get(4),
        lead_status_name: row.get(5),
        hook_action: HookActionText::from_db(row.get(6))?,
        status: last_event.as_ref().map(|e| e.status),
        note: NoteSummary::new(note, enrichment.as_ref()),
        last_event,
        enrichment,
        c2s_updated_at: row.get(7),
        closed_at: row.get(8),
        created_at: row.get(9),
    })
}

/// Newest leads first (`created_at`, when we first stored the lead: never
/// changes), keyset-paged on `(created_at, id)`; `status` keeps the leads
/// whose last event has it.
pub async fn leads(db: &impl GenericClient, q: &LeadQuery) -> Result<LeadPage, ApiError> {
    let (at, key) = match &q.cursor {
        Some(c) => (Some(c.at), Some(c.key.as_str())),
        None => (None, None),
    };
    let stmt = db
        .prepare_cached(&format!(
            "select {SUMMARY_COLUMNS}, e.*, r.*, n.* from c2s_leads l {} \
             where ($1::text is null or e.status = $1) \
               and ($2::timestamptz is null or (l.created_at, l.id) < ($2, $3::text)) \
             order by l.created_at desc, l.id desc limit $4",
            last_of_lead()
        ))
        .await
        .map_err(dbe("preparing the C2S leads list"))?;
    let status = q.status.map(EventStatus::as_str);
    let rows = db
        .query(&stmt, &[&status, &at, &key, &(q.limit + 1)])
        .await
        .map_err(dbe("listing C2S leads"))?;
    let limit = usize::try_from(q.limit).expect("limit is positive");
    let next_cursor = (rows.len() > limit).then(|| {
        let last = &rows[limit - 1];
        KeyCursor {
            at: last.get(9),
            key: last.get(0),
        }
        .encode(KeyCursor::C2S_LEADS)
    });
    let leads = rows
        .iter()
        .take(limit)
        .map(summary)
        .collect::<Result<_, _>>()?;
    Ok(LeadPage {
        leads,
        next_cursor,
        limit: q.limit,
    })
}

/// The lead as C2S last described it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeadOut {
    pub lead_id: String,
    pub customer_name: Option<String>,
    pub customer_email: Option<String>,
    pub customer_phone: Option<String>,
    pub customer_phone2: Option<String>,
    pub customer_phone_global: Option<String>,
    pub seller_id: Option<String>,
    pub seller_name: Option<String>,
    pub seller_email: Option<String>,
    pub product_description: Option<String>,
    pub prop_ref: Option<String>,
    pub price_cents: Option<i64>,
    pub city: Option<String>,
    pub neighbourhood: Option<String>,
    pub lead_status_alias: Option<String>,
    pub lead_status_name: Option<String>,
    pub lead_source: Option<String>,
    pub channel: Option<String>,
    pub hook_action: HookActionText,
    pub c2s_created_at: Option<DateTime<Utc>>,
    pub c2s_updated_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One field's validation, without its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FieldValidation {
    pub valid: bool,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunValidation {
    pub phone: Option<FieldValidation>,
    pub email: Option<FieldValidation>,
}

text_enum!(
    /// A paid source of the enrichment.
    LookupSource {
        Diretrix = "diretrix",
        WorkApi = "work_api",
    }
);

text_enum!(
    /// What a lookup asked about.
    LookupDatum {
        Phone = "phone",
        Email = "email",
        Cpf = "cpf",
    }
);

text_enum!(
    /// What came of a lookup, as far as the run recorded it.
    LookupResult {
        /// Diretrix named a CPF for the datum / the Work API had data for the CPF.
        Found = "found",
        /// Looked up, nothing usable came back (not found, or a lookup error
        /// the run's `reasons` spell out).
        NothingUsable = "nothing_usable",
        /// Not looked up: the datum was invalid or missing (see `reason`).
        NotLookedUp = "not_looked_up",
    }
);

/// One lookup a run made (or chose not to make).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lookup {
    pub source: LookupSource,
    pub datum: LookupDatum,
    pub result: LookupResult,
    /// Why not looked up (`not_looked_up` only).
    pub reason: Option<String>,
    /// The party the Work API data was stored as (`work_api` only).
    pub party_id: Option<Uuid>,
}

/// The lookups of a run, from what it recorded: the validation says which
/// data were looked up, the verdict which of them named a CPF, and the
/// parties it linked which CPFs had Work API data. Neither values nor
/// provider answers are shown; failures are worded in `reasons`.
pub fn lookups(
    validation: &RunValidation,
    verdict: Option<Verdict>,
    parties: &[(Uuid, MatchedBy)],
) -> Vec<Lookup> {
    let found_by = |datum: LookupDatum| match (verdict, datum) {
        (Some(Verdict::SamePerson | Verdict::DifferentPeople), _) => true,
        (Some(Verdict::PhoneOnly), LookupDatum::Phone) => true,
        (Some(Verdict::EmailOnly), LookupDatum::Email) => true,
        _ => false,
    };
    let mut out = Vec::new();
    for (datum, check) in [
        (LookupDatum::Phone, &validation.phone),
        (LookupDatum::Email, &validation.email),
    ] {
        let Some(check) = check else { continue };
        let (result, reason) = if !check.valid {
            (LookupResult::NotLookedUp, check.reason.clone())
        } else if found_by(datum) {
            (LookupResult::Found, None)
        } else {
            (LookupResult::NothingUsable, None)
        };
        out.push(Lookup {
            source: LookupSource::Diretrix,
            datum,
            result,
            reason,
            party_id: None,
        });
    }
    for (party, _) in parties {
        out.push(Lookup {
            source: LookupSource::WorkApi,
            datum: LookupDatum::Cpf,
            result: LookupResult::Found,
            reason: None,
            party_id: Some(*party),
        });
    }
    out
}

/// One enrichment run of the lead.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunOut {
    pub run_id: Uuid,
    pub event_id: Uuid,
    pub hook_action: HookActionText,
    pub status: RunStatus,
    pub identity: Option<Verdict>,
    pub validation: RunValidation,
    pub lookups: Vec<Lookup>,
    pub reasons: Vec<String>,
    pub error: Option<String>,
    pub attempts: i32,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i32>,
}

/// A note written for the lead, with the text posted (or meant to be) to C2S.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NoteOut {
    pub note_id: Uuid,
    pub run_id: Uuid,
    pub status: NoteStatus,
    pub body: String,
    pub attempts: i32,
    pub http_status: Option<i32>,
    pub error: Option<String>,
    pub attempted_at: Option<DateTime<Utc>>,
    pub posted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A person the lead resolved to (`parties`, linked through `lead_parties`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartyOut {
    pub party_id: Uuid,
    pub cpf: String,
    pub name: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub gender: Option<String>,
    pub mother_name: Option<String>,
    pub emails: Value,
    pub phones: Value,
    pub addresses: Value,
    pub companies: Value,
    pub financial: Option<Value>,
    pub matched_by: MatchedBy,
    pub run_id: Uuid,
    pub linked_at: DateTime<Utc>,
    pub fetched_at: DateTime<Utc>,
}

/// The CRM contact the link rule names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkedContact {
    pub contact_id: Uuid,
    pub matched_by: LinkedBy,
    pub full_name: Option<String>,
    pub owner_id: Option<String>,
}

/// `GET /api/v1/c2s/leads/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeadDetail {
    pub lead: LeadOut,
    /// The latest enriching run's same-person verdict.
    pub verdict: Option<Verdict>,
    pub note: NoteSummary,
    pub events: Vec<LeadEventOut>,
    pub runs: Vec<RunOut>,
    pub notes: Vec<NoteOut>,
    pub parties: Vec<PartyOut>,
    pub contact: Option<LinkedContact>,
}

pub const DETAIL_EVENTS_LIMIT: i64 = 100;
pub const DETAIL_RUNS_LIMIT: i64 = 50;

const LEAD_COLUMNS: &str = "l.id, l.customer_name, l.customer_email, l.customer_phone, \
     l.customer_phone2, l.customer_phone_global, l.seller_id, l.seller_name, l.seller_email, \
     l.product_description, l.prop_ref, l.price_cents, l.city, l.neighbourhood, l.status_alias, \
     l.status_name, l.lead_source, l.channel, l.last_hook_action, l.c2s_created_at, \
     l.c2s_updated_at, l.closed_at, l.created_at, l.updated_at";

fn lead_out(r: &Row) -> Result<LeadOut, ApiError> {
    Ok(LeadOut {
        lead_id: r.get(0),
        customer_name: r.get(1),
        customer_email: r.get(2),
        customer_phone: r.get(3),
        customer_phone2: r.get(4),
        customer_phone_global: r.get(5),
        seller_id: r.get(6),
        seller_name: r.get(7),
        seller_email: r.get(8),
        product_description: r.get(9),
        prop_ref: r.get(10),
        price_cents: r.get(11),
        city: r.get(12),
        neighbourhood: r.get(13),
        lead_status_alias: r.get(14),
        lead_status_name: r.get(15),
        lead_source: r.get(16),
        channel: r.get(17),
        hook_action: HookActionText::from_db(r.get(18))?,
        c2s_created_at: r.get(19),
        c2s_updated_at: r.get(20),
        closed_at: r.get(21),
        created_at: r.get(22),
        updated_at: r.get(23),
    })
}

/// One lead with its events, runs (with their lookups), notes, parties and
/// linked contact. Read in one snapshot when `db` is a repeatable-read
/// transaction. `None`: no such lead.
pub async fn lead_detail(
    db: &impl GenericClient,
    lead_id: &str,
) -> Result<Option<LeadDetail>, ApiError> {
    let stmt = db
        .prepare_cached(&format!(
            "select {LEAD_COLUMNS}, n.* from c2s_leads l \
             left join lateral (select n.status, n.error, n.http_status, n.posted_at \
                 from enrichment_notes n where n.lead_id = l.id \
                 order by n.created_at desc, n.id desc limit 1) n on true \
             where l.id = $1"
        ))
        .await
        .map_err(dbe("preparing the C2S lead read"))?;
    let Some(row) = db
        .query_opt(&stmt, &[&lead_id])
        .await
        .map_err(dbe("reading the C2S lead"))?
    else {
        return Ok(None);
    };
    let lead = lead_out(&row)?;
    let last_note = parse_opt(row.get(24), NoteStatus::from_db)?
        .map(|s| (s, row.get(25), row.get(26), row.get(27)));

    let stmt = db
        .prepare_cached(&format!(
            "select {EVENT_COLUMNS} from webhook_events e \
             where e.source = 'c2s' and e.subject_id = $1 and e.status <> 'rejected' \
             order by e.received_at desc, e.id desc limit $2"
        ))
        .await
        .map_err(dbe("preparing the lead's events"))?;
    let events = db
        .query(&stmt, &[&lead_id, &DETAIL_EVENTS_LIMIT])
        .await
        .map_err(dbe("reading the lead's events"))?
        .iter()
        .map(|r| event_at(r, 0).map(|e| e.expect("the id is not null")))
        .collect::<Result<Vec<_>, _>>()?;

    let stmt = db
        .prepare_cached(
            "select p.id, p.cpf, p.name, p.birth_date, p.gender, p.mother_name, p.emails, p.phones, \
                    p.addresses, p.companies, p.financial, lp.matched_by, lp.run_id, lp.updated_at, \
                    p.fetched_at \
             from lead_parties lp join parties p on p.id = lp.party_id \
             where lp.lead_id = $1 order by lp.created_at, p.id",
        )
        .await
        .map_err(dbe("preparing the lead's parties"))?;
    let parties = db
        .query(&stmt, &[&lead_id])
        .await
        .map_err(dbe("reading the lead's parties"))?
        .iter()
        .map(|r| {
            Ok(PartyOut {
                party_id: r.get(0),
                cpf: r.get(1),
                name: r.get(2),
                birth_date: r.get(3),
                gender: r.get(4),
                mother_name: r.get(5),
                emails: r.get(6),
                phones: r.get(7),
                addresses: r.get(8),
                companies: r.get(9),
                financial: r.get(10),
                matched_by: MatchedBy::from_db(r.get(11))?,
                run_id: r.get(12),
                linked_at: r.get(13),
                fetched_at: r.get(14),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;

    let stmt = db
        .prepare_cached(
            "select r.id, r.event_id, r.hook_action, r.status, r.identity, r.validation, r.reasons, \
                    r.error, r.attempts, r.started_at, r.finished_at, r.duration_ms \
             from enrichment_runs r where r.lead_id = $1 \
             order by r.started_at desc, r.id desc limit $2",
        )
        .await
        .map_err(dbe("preparing the lead's runs"))?;
    let runs = db
        .query(&stmt, &[&lead_id, &DETAIL_RUNS_LIMIT])
        .await
        .map_err(dbe("reading the lead's runs"))?
        .iter()
        .map(|r| {
            let run_id: Uuid = r.get(0);
            let validation: Value = r.get(5);
            let field = |name: &str| {
                validation
                    .get(name)
                    .and_then(|v| serde_json::from_value::<FieldValidation>(v.clone()).ok())
            };
            let validation = RunValidation {
                phone: field("phone"),
                email: field("email"),
            };
            let identity = parse_opt(r.get(4), Verdict::from_db)?;
            let linked: Vec<(Uuid, MatchedBy)> = parties
                .iter()
                .filter(|p| p.run_id == run_id)
                .map(|p| (p.party_id, p.matched_by))
                .collect();
            let reasons: Value = r.get(6);
            Ok(RunOut {
                run_id,
                event_id: r.get(1),
                hook_action: HookActionText::from_db(r.get(2))?,
                status: RunStatus::from_db(r.get(3))?,
                identity,
                lookups: lookups(&validation, identity, &linked),
                validation,
                reasons: serde_json::from_value(reasons).unwrap_or_default(),
                error: r.get(7),
                attempts: r.get(8),
                started_at: r.get(9),
                finished_at: r.get(10),
                duration_ms: r.get(11),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;

    let stmt = db
        .prepare_cached(
            "select id, run_id, status, body, attempts, http_status, error, attempted_at, posted_at, \
                    created_at from enrichment_notes where lead_id = $1 order by created_at desc, id desc",
        )
        .await
        .map_err(dbe("preparing the lead's notes"))?;
    let notes = db
        .query(&stmt, &[&lead_id])
        .await
        .map_err(dbe("reading the lead's notes"))?
        .iter()
        .map(|r| {
            Ok(NoteOut {
                note_id: r.get(0),
                run_id: r.get(1),
                status: NoteStatus::from_db(r.get(2))?,
                body: r.get(3),
                attempts: r.get(4),
                http_status: r.get(5),
                error: r.get(6),
                attempted_at: r.get(7),
                posted_at: r.get(8),
                created_at: r.get(9),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;

    let contact = linked_contact(db, &lead).await?;
    let verdict = runs.iter().find_map(|r| r.identity);
    let latest = runs.first().map(|r| EnrichmentOutcome {
        run_id: r.run_id,
        status: r.status,
        identity: r.identity,
        attempts: r.attempts,
        error: r.error.clone(),
        finished_at: r.finished_at,
    });
    Ok(Some(LeadDetail {
        note: NoteSummary::new(last_note, latest.as_ref()),
        lead,
        verdict,
        events,
        runs,
        notes,
        parties,
        contact,
    }))
}

async fn linked_contact(
    db: &impl GenericClient,
    lead: &LeadOut,
) -> Result<Option<LinkedContact>, ApiError> {
    let data = LeadContactData {
        email: lead.customer_email.as_deref(),
        phones: [
            lead.customer_phone.as_deref(),
            lead.customer_phone2.as_deref(),
            lead.customer_phone_global.as_deref(),
        ],
    };
    let Some((contact_id, matched_by)) = link::contact_for_lead(db, &data).await? else {
        return Ok(None);
    };
    let stmt = db
        .prepare_cached("select full_name, owner_id from contacts where id = $1")
        .await
        .map_err(dbe("preparing the linked contact read"))?;
    let row = db
        .query_one(&stmt, &[&contact_id])
        .await
        .map_err(dbe("reading the linked contact"))?;
    Ok(Some(LinkedContact {
        contact_id,
        matched_by,
        full_name: row.get(0),
        owner_id: row.get(1),
    }))
}

/// One lead on a contact's page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContactLead {
    pub matched_by: LinkedBy,
    #[serde(flatten)]
    pub lead: LeadSummary,
    /// The latest enriching run's same-person verdict.
    pub verdict: Option<Verdict>,
    /// The text of the latest note (posted or not).
    pub note_body: Option<String>,
    pub parties: Vec<ContactParty>,
}

/// A person the lead resolved to, as the contact page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContactParty {
    pub party_id: Uuid,
    pub name: Option<String>,
    pub matched_by: MatchedBy,
}

/// `GET /crm/contacts/{id}/c2s`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContactC2s {
    pub contact_id: Uuid,
    pub leads: Vec<ContactLead>,
}

/// [`contact_c2s`] for a caller: the contact must be one they may read
/// (members: their own and unowned contacts), else 404 as the contact read.
pub async fn contact_c2s_for(
    db: &impl GenericClient,
    who: &crate::auth::Principal,
    contact_id: Uuid,
) -> Result<ContactC2s, ApiError> {
    let stmt = db
        .prepare_cached("select email, phone, owner_id from contacts where id = $1")
        .await
        .map_err(dbe("preparing the contact read"))?;
    let row = db
        .query_opt(&stmt, &[&contact_id])
        .await
        .map_err(dbe("reading the contact"))?
        .filter(|r| who.may_read(r.get::<_, Option<&str>>(2)))
        .ok_or(ApiError::NotFound("contact"))?;
    contact_c2s(db, contact_id, row.get(0), row.get(1)).await
}

/// The C2S leads the link rule ties to this contact, with their enrichment.
/// The caller has already checked that the contact is visible to them.
pub async fn contact_c2s(
    db: &impl GenericClient,
    contact_id: Uuid,
    email: Option<&str>,
    phone: Option<&str>,
) -> Result<ContactC2s, ApiError> {
    let linked = link::leads_for_contact(db, contact_id, email, phone).await?;
    let ids: Vec<&str> = linked.iter().map(|(id, _)| id.as_str()).collect();
    let stmt = db
        .prepare_cached(&format!(
            "select {SUMMARY_COLUMNS}, e.*, r.*, n.*, \
                    (select n2.body from enrichment_notes n2 where n2.lead_id = l.id \
                     order by n2.created_at desc, n2.id desc limit 1), \
                    (select r2.identity from enrichment_runs r2 where r2.lead_id = l.id \
                       and r2.identity is not null order by r2.started_at desc, r2.id desc limit 1) \
             from c2s_leads l {} where l.id = any($1) order by l.created_at desc, l.id desc",
            last_of_lead()
        ))
        .await
        .map_err(dbe("preparing the contact's C2S leads"))?;
    let rows = db
        .query(&stmt, &[&ids])
        .await
        .map_err(dbe("reading the contact's C2S leads"))?;
    let parties = db
        .prepare_cached(
            "select lp.lead_id, p.id, p.name, lp.matched_by from lead_parties lp \
             join parties p on p.id = lp.party_id where lp.lead_id = any($1) order by lp.created_at, p.id",
        )
        .await
        .map_err(dbe("preparing the contact's parties"))?;
    let parties = db
        .query(&parties, &[&ids])
        .await
        .map_err(dbe("reading the contact's parties"))?;
    let extra = AFTER_SUMMARY + 19;
    let leads = rows
        .iter()
        .map(|row| {
            let lead = summary(row)?;
            let matched_by = linked
                .iter()
                .find(|(id, _)| *id == lead.lead_id)
                .map(|(_, by)| *by)
                .expect("only linked leads are read");
            let parties = parties
                .iter()
                .filter(|p| p.get::<_, &str>(0) == lead.lead_id)
                .map(|p| {
                    Ok(ContactParty {
                        party_id: p.get(1),
                        name: p.get(2),
                        matched_by: MatchedBy::from_db(p.get(3))?,
                    })
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            Ok(ContactLead {
                matched_by,
                verdict: parse_opt(row.get(extra + 1), Verdict::from_db)?,
                note_body: row.get(extra),
                parties,
                lead,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(ContactC2s { contact_id, leads })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(valid: bool, reason: Option<&str>) -> Option<FieldValidation> {
        Some(FieldValidation {
            valid,
            reason: reason.map(str::to_owned),
        })
    }

    #[test]
    fn lookups_follow_validation_verdict_and_parties() {
        let v = RunValidation {
            phone: check(true, None),
            email: check(false, Some("placeholder domain")),
        };
        let party = Uuid::now_v7();
        let got = lookups(&v, Some(Verdict::PhoneOnly), &[(party, MatchedBy::Phone)]);
        assert_eq!(got.len(), 3);
        assert_eq!(
            (got[0].datum, got[0].result),
            (LookupDatum::Phone, LookupResult::Found)
        );
        assert_eq!(got[1].result, LookupResult::NotLookedUp);
        assert_eq!(got[1].reason.as_deref(), Some("placeholder domain"));
        assert_eq!(
            (got[2].source, got[2].party_id),
            (LookupSource::WorkApi, Some(party))
        );
        let none = lookups(&v, Some(Verdict::NotFound), &[]);
        assert_eq!(none[0].result, LookupResult::NothingUsable);
    }

    #[test]
    fn note_summary_says_why_not_posted() {
        let posted = NoteSummary::new(
            Some((NoteStatus::Posted, None, Some(201), Some(Utc::now()))),
            None,
        );
        assert!(posted.posted && posted.why.is_none());
        let refused = NoteSummary::new(Some((NoteStatus::Failed, None, Some(422), None)), None);
        assert_eq!(refused.why.as_deref(), Some("C2S refused it (HTTP 422)"));
        let run = EnrichmentOutcome {
            run_id: Uuid::now_v7(),
            status: RunStatus::Failed,
            identity: Some(Verdict::NotFound),
            attempts: 1,
            error: Some("no CPF found (phone: not found; e-mail: not provided)".into()),
            finished_at: None,
        };
        let none = NoteSummary::new(None, Some(&run));
        assert!(!none.posted);
        assert_eq!(none.status, None);
        assert!(none.why.unwrap().starts_with("no CPF found"));
        assert_eq!(
            NoteSummary::new(None, None).why.as_deref(),
            Some("not enriched yet")
        );
    }

    #[test]
    fn status_filter_is_checked() {
        assert_eq!(
            LeadQuery::parse(Some("failed"), None, None).unwrap().status,
            Some(EventStatus::Failed)
        );
        let e = LeadQuery::parse(Some("rejected"), None, None).unwrap_err();
        assert_eq!(e.body()["field"], "status");
        assert_eq!(
            LeadQuery::parse(None, Some("zz"), None).unwrap_err().body()["field"],
            "cursor"
        );
    }
}
