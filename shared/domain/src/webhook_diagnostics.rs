//! Webhook diagnostics for ops (issue 12 §3): recent inbound events per
//! source with their status, rejection code and timings, and a per-source
//! summary over a window (counts by status and by error code, with a plain
//! hint when a source is being refused). Read from `webhook_events` only:
//! never bodies, payloads, idempotency keys (they can hold e-mails) or
//! headers — nothing a secret could be in.
//!
//! Where the webhooks record refused calls as sampled or counted rows rather
//! than one row per call, the counts here are what was recorded.

use crate::{
    crm::{ApiError, cursor::KeyCursor, input},
    db::GenericClient,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// `webhook_events.source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Instantly,
    Calcom,
    Twilio,
    C2s,
    CrmApi,
}

impl Source {
    pub const ALL: [Source; 5] = [
        Source::Instantly,
        Source::Calcom,
        Source::Twilio,
        Source::C2s,
        Source::CrmApi,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Instantly => "instantly",
            Source::Calcom => "calcom",
            Source::Twilio => "twilio",
            Source::C2s => "c2s",
            Source::CrmApi => "crm_api",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    fn label(self) -> &'static str {
        match self {
            Source::Instantly => "Instantly",
            Source::Calcom => "Cal.com",
            Source::Twilio => "Twilio",
            Source::C2s => "Contact2Sale",
            Source::CrmApi => "The CRM API",
        }
    }
}

/// `webhook_events.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    Received,
    Processed,
    Ignored,
    Failed,
    Rejected,
    Completed,
    Partial,
    Skipped,
}

impl EventStatus {
    pub const ALL: [EventStatus; 8] = [
        EventStatus::Received,
        EventStatus::Processed,
        EventStatus::Ignored,
        EventStatus::Failed,
        EventStatus::Rejected,
        EventStatus::Completed,
        EventStatus::Partial,
        EventStatus::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Received => "received",
            EventStatus::Processed => "processed",
            EventStatus::Ignored => "ignored",
            EventStatus::Failed => "failed",
            EventStatus::Rejected => "rejected",
            EventStatus::Completed => "completed",
            EventStatus::Partial => "partial",
            EventStatus::Skipped => "skipped",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

fn status_from_db(raw: &str) -> Result<EventStatus, ApiError> {
    EventStatus::parse(raw).ok_or_else(|| {
        ApiError::Unexpected(anyhow::anyhow!("unknown webhook event status {raw:?}"))
    })
}

fn source_from_db(raw: &str) -> Result<Source, ApiError> {
    Source::parse(raw)
        .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("unknown webhook source {raw:?}")))
}

/// One inbound event, without anything it carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventOut {
    pub id: Uuid,
    pub source: Source,
    pub event_type: Option<String>,
    pub status: EventStatus,
    pub http_status: Option<i32>,
    pub error_code: Option<String>,
    /// Our own wording of the refusal or failure (field names, never values).
    pub error: Option<String>,
    /// The external object it was about (a C2S lead id), when recorded.
    pub subject_id: Option<String>,
    pub attempts: i32,
    pub received_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventPage {
    pub events: Vec<EventOut>,
    pub next_cursor: Option<String>,
    pub limit: i64,
}

/// `GET /api/v1/admin/webhook-events?source=&status=&error_code=&cursor=&limit=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    pub source: Option<Source>,
    pub status: Option<EventStatus>,
    pub error_code: Option<String>,
    pub cursor: Option<KeyCursor>,
    pub limit: i64,
}

pub const EVENTS_DEFAULT_LIMIT: i64 = 50;
pub const EVENTS_MAX_LIMIT: i64 = 200;
const CURSOR_TAG: &str = "w1";

fn blank(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|s| !s.is_empty())
}

impl EventQuery {
    pub fn parse(
        source: Option<&str>,
        status: Option<&str>,
        error_code: Option<&str>,
        cursor: Option<&str>,
        limit: Option<&str>,
    ) -> Result<Self, ApiError> {
        let source = blank(source)
            .map(|s| {
                Source::parse(s).ok_or_else(|| {
                    ApiError::validation(
                        "source",
                        "must be one of instantly, calcom, twilio, c2s, crm_api",
                    )
                })
            })
            .transpose()?;
        let status = blank(status)
            .map(|s| {
                EventStatus::parse(s).ok_or_else(|| {
                    ApiError::validation(
                        "status",
                        "must be one of received, processed, ignored, failed, rejected, completed, partial, skipped",
                    )
                })
            })
            .transpose()?;
        let error_code = blank(error_code)
            .map(|c| {
                if c.len() <= 64
                    && c.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                {
                    Ok(c.to_string())
                } else {
                    Err(ApiError::validation("error_code", "is not an error code"))
                }
            })
            .transpose()?;
        let cursor = blank(cursor)
            .map(|c| {
                let k = KeyCursor::decode(c, CURSOR_TAG)?;
                Uuid::parse_str(&k.key)
                    .map(|_| k)
                    .map_err(|_| ApiError::validation("cursor", "is not a valid cursor"))
            })
            .transpose()?;
        Ok(Self {
            source,
            status,
            error_code,
            cursor,
            limit: input::limit(limit, EVENTS_DEFAULT_LIMIT, EVENTS_MAX_LIMIT)?,
        })
    }
}

/// Newest first, keyset-paged on `(received_at, id)`.
pub async fn events(db: &impl GenericClient, q: &EventQuery) -> Result<EventPage, ApiError> {
    let (at, id) = match &q.cursor {
        Some(c) => (Some(c.at), Uuid::parse_str(&c.key).ok()),
        None => (None, None),
    };
    let stmt = db
        .prepare_cached(
            "select id, source, event_type, status, http_status, error_code, left(error, 500), subject_id, \
                    attempts, received_at, processed_at, duration_ms \
             from webhook_events \
             where ($1::text is null or source = $1) and ($2::text is null or status = $2) \
               and ($3::text is null or error_code = $3) \
               and ($4::timestamptz is null or (received_at, id) < ($4, $5::uuid)) \
             order by received_at desc, id desc limit $6",
        )
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the webhook events read"))?;
    let rows = db
        .query(
            &stmt,
            &[
                &q.source.map(Source::as_str),
                &q.status.map(EventStatus::as_str),
                &q.error_code,
                &at,
                &id,
                &(q.limit + 1),
            ],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "reading webhook events"))?;
    let limit = usize::try_from(q.limit).expect("limit is positive");
    let next_cursor = (rows.len() > limit).then(|| {
        let last = &rows[limit - 1];
        KeyCursor {
            at: last.get(9),
            key: last.get::<_, Uuid>(0).to_string(),
        }
        .encode(CURSOR_TAG)
    });
    let events = rows
        .iter()
        .take(limit)
        .map(|r| {
            Ok(EventOut {
                id: r.get(0),
                source: source_from_db(r.get(1))?,
                event_type: r.get(2),
                status: status_from_db(r.get(3))?,
                http_status: r.get(4),
                error_code: r.get(5),
                error: r.get(6),
                subject_id: r.get(7),
                attempts: r.get(8),
                received_at: r.get(9),
                processed_at: r.get(10),
                duration_ms: r.get(11),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(EventPage {
        events,
        next_cursor,
        limit: q.limit,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusCount {
    pub status: EventStatus,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CodeCount {
    pub status: EventStatus,
    pub error_code: String,
    pub count: i64,
    pub last_at: DateTime<Utc>,
}

/// One source over the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceSummary {
    pub source: Source,
    pub total: i64,
    pub by_status: Vec<StatusCount>,
    /// Refusals and failures by code, most frequent first.
    pub by_error_code: Vec<CodeCount>,
    pub last_received_at: Option<DateTime<Utc>>,
    /// The last call that was not refused.
    pub last_accepted_at: Option<DateTime<Utc>>,
    pub median_duration_ms: Option<i64>,
    pub p95_duration_ms: Option<i64>,
    /// Plain sentences for ops, e.g. that Cal.com is being refused for its signature.
    pub hints: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub hours: i32,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Every source, also those without events in the window (total 0).
    pub sources: Vec<SourceSummary>,
}

pub const SUMMARY_DEFAULT_HOURS: i64 = 24;
pub const SUMMARY_MAX_HOURS: i64 = 720;

/// What ops should read into a source's refusals.
pub fn hints(source: Source, s: &SourceSummary) -> Vec<String> {
    let mut out = Vec::new();
    let code = |c: &str| {
        s.by_error_code
            .iter()
            .filter(|x| x.error_code == c && x.status == EventStatus::Rejected)
            .map(|x| x.count)
            .sum::<i64>()
    };
    let accepted_since_refusal = |c: &str| {
        let last = s
            .by_error_code
            .iter()
            .filter(|x| x.error_code == c)
            .map(|x| x.last_at)
            .max();
        matches!((last, s.last_accepted_at), (Some(l), Some(a)) if a > l)
    };
    let name = source.label();
    let missing = code("signature_missing");
    if missing > 0 && !accepted_since_refusal("signature_missing") {
        out.push(format!(
            "{name} is sending without a signature or token ({missing} refused): set the shared secret on the sender"
        ));
    }
    let invalid = code("signature_invalid");
    if invalid > 0 && !accepted_since_refusal("signature_invalid") {
        let extra = if source == Source::Calcom {
            " (a Cal.com webhook saved without a secret sends `no-secret-provided`)"
        } else {
            ""
        };
        out.push(format!(
            "{name}'s signature does not verify ({invalid} refused){extra}: the secret there and ours differ"
        ));
    }
    let failed: i64 = s
        .by_status
        .iter()
        .filter(|x| x.status == EventStatus::Failed)
        .map(|x| x.count)
        .sum();
    if failed > 0 {
        out.push(format!(
            "{failed} {name} event(s) failed on our side or in the worker: see status=failed"
        ));
    }
    out
}

/// Counts by status and by error code per source over the last `hours`, with timings.
pub async fn summary(db: &impl GenericClient, hours: i32) -> Result<Summary, ApiError> {
    let window = db
        .query_one(
            "select now() - make_interval(hours => $1), now()",
            &[&hours],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "reading the window"))?;
    let (since, until): (DateTime<Utc>, DateTime<Utc>) = (window.get(0), window.get(1));
    let per_status = db
        .query(
            "select source, status, count(*) from webhook_events \
             where received_at > $1 group by 1, 2 order by 1, 2",
            &[&since],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "counting webhook events"))?;
    let per_code = db
        .query(
            "select source, status, error_code, count(*), max(received_at) from webhook_events \
             where received_at > $1 and error_code is not null group by 1, 2, 3 order by 4 desc, 1, 3",
            &[&since],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "counting webhook errors"))?;
    let per_source = db
        .query(
            "select source, max(received_at), max(received_at) filter (where status <> 'rejected'), \
                    percentile_cont(0.5) within group (order by duration_ms) filter (where duration_ms is not null), \
                    percentile_cont(0.95) within group (order by duration_ms) filter (where duration_ms is not null) \
             from webhook_events where received_at > $1 group by 1",
            &[&since],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "timing webhook events"))?;
    let mut sources = Vec::new();
    for source in Source::ALL {
        let mine = |r: &&tokio_postgres::Row| r.get::<_, &str>(0) == source.as_str();
        let by_status = per_status
            .iter()
            .filter(mine)
            .map(|r| {
                Ok(StatusCount {
                    status: status_from_db(r.get(1))?,
                    count: r.get(2),
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        let by_error_code = per_code
            .iter()
            .filter(mine)
            .map(|r| {
                Ok(CodeCount {
                    status: status_from_db(r.get(1))?,
                    error_code: r.get(2),
                    count: r.get(3),
                    last_at: r.get(4),
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        let times = per_source.iter().find(mine);
        let ms = |i: usize| {
            times
                .and_then(|r| r.get::<_, Option<f64>>(i))
                .map(|v| v.round() as i64)
        };
        let mut s = SourceSummary {
            source,
            total: by_status.iter().map(|c| c.count).sum(),
            by_status,
            by_error_code,
            last_received_at: times.map(|r| r.get(1)),
            last_accepted_at: times.and_then(|r| r.get(2)),
            median_duration_ms: ms(3),
            p95_duration_ms: ms(4),
            hints: Vec::new(),
        };
        s.hints = hints(source, &s);
        sources.push(s);
    }
    Ok(Summary {
        hours,
        since,
        until,
        sources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary_with(codes: Vec<CodeCount>, accepted: Option<DateTime<Utc>>) -> SourceSummary {
        SourceSummary {
            source: Source::Calcom,
            total: codes.iter().map(|c| c.count).sum(),
            by_status: vec![],
            by_error_code: codes,
            last_received_at: None,
            last_accepted_at: accepted,
            median_duration_ms: None,
            p95_duration_ms: None,
            hints: vec![],
        }
    }

    #[test]
    fn a_source_refused_for_its_signature_gets_a_hint_until_it_is_accepted_again() {
        let t = Utc::now();
        let codes = vec![CodeCount {
            status: EventStatus::Rejected,
            error_code: "signature_invalid".into(),
            count: 7,
            last_at: t,
        }];
        let s = summary_with(codes.clone(), None);
        let h = hints(Source::Calcom, &s);
        assert_eq!(h.len(), 1);
        assert!(
            h[0].starts_with("Cal.com's signature does not verify (7 refused)"),
            "{h:?}"
        );
        assert!(h[0].contains("no-secret-provided"));
        let fixed = summary_with(codes, Some(t + chrono::Duration::seconds(1)));
        assert!(hints(Source::Calcom, &fixed).is_empty());
    }

    #[test]
    fn filters_are_checked_naming_the_field() {
        let bad = |s: Option<&str>, st: Option<&str>, c: Option<&str>, cur: Option<&str>| {
            EventQuery::parse(s, st, c, cur, None).unwrap_err().body()["field"].clone()
        };
        assert_eq!(bad(Some("stripe"), None, None, None), "source");
        assert_eq!(bad(None, Some("nope"), None, None), "status");
        assert_eq!(bad(None, None, Some("DROP TABLE"), None), "error_code");
        assert_eq!(bad(None, None, None, Some("zz")), "cursor");
        let q = EventQuery::parse(Some("calcom"), Some("rejected"), None, None, None).unwrap();
        assert_eq!(
            (q.source, q.status, q.limit),
            (Some(Source::Calcom), Some(EventStatus::Rejected), 50)
        );
    }
}
