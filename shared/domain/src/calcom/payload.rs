//! Cal.com's webhook body, parsed into a `Booking` or recognised as a trigger
//! this flow does not act on.
//!
//! Booking triggers arrive as `{triggerEvent, createdAt, payload: {…}}` where
//! `payload` is Cal.com's CalendarEvent plus booking extras (`uid`,
//! `bookingId`, `status`, `rescheduleUid`, `cancellationReason`, …). Other
//! triggers may arrive without the wrapper (MEETING_ENDED carries the booking
//! at the top level) or with an empty one (the settings page's PING): only
//! `triggerEvent` is required of them. Errors name the field (422).

use crate::{
    error::WebhookError,
    fields::{clip, text, timestamp},
    types::EmailAddress,
};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// A uid longer than this is refused: the idempotency key built from it must fit 255 characters.
const MAX_UID: usize = 200;

/// The booking triggers this flow acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Created,
    Rescheduled,
    Cancelled,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Created => "BOOKING_CREATED",
            Trigger::Rescheduled => "BOOKING_RESCHEDULED",
            Trigger::Cancelled => "BOOKING_CANCELLED",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Trigger::Created, Trigger::Rescheduled, Trigger::Cancelled]
            .into_iter()
            .find(|t| t.as_str() == raw)
    }
}

/// Someone on the booking, as Cal.com describes them.
#[derive(Debug, Clone, PartialEq)]
pub struct Attendee {
    pub email: EmailAddress,
    pub name: Option<String>,
    /// IANA name as Cal.com sends it (`America/Sao_Paulo`); kept on the contact.
    pub time_zone: Option<String>,
}

/// The host. Informational: an unusable organizer never refuses the booking.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Organizer {
    pub email: Option<EmailAddress>,
    pub name: Option<String>,
    pub time_zone: Option<String>,
}

/// A booking trigger, validated and normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct Booking {
    pub trigger: Trigger,
    pub uid: String,
    /// Cal.com's numeric `bookingId`.
    pub booking_id: Option<i64>,
    pub title: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Primary attendee first; de-duplicated by e-mail; the organizer left out.
    pub attendees: Vec<Attendee>,
    pub organizer: Organizer,
    /// Cal.com's location value: an address, a URL or an app id such as `integrations:daily`.
    pub location: Option<String>,
    /// The join link: `metadata.videoCallUrl`, else `videoCallData.url`, else a URL location.
    pub meeting_url: Option<String>,
    /// On BOOKING_RESCHEDULED: the uid of the booking this one replaces.
    pub reschedule_uid: Option<String>,
    /// Cal.com's booking status (`ACCEPTED`, `CANCELLED`, …).
    pub status: Option<String>,
    pub cancellation_reason: Option<String>,
    /// The envelope's `createdAt`: when Cal.com emitted the trigger.
    pub created_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Booking(Box<Booking>),
    /// A trigger this flow does not act on (PING, MEETING_ENDED, BOOKING_REQUESTED, …).
    Other {
        trigger: String,
        /// The booking uid when the body names one, for the idempotency key.
        uid: Option<String>,
    },
}

impl Event {
    pub fn trigger(&self) -> &str {
        match self {
            Event::Booking(b) => b.trigger.as_str(),
            Event::Other { trigger, .. } => trigger,
        }
    }

    /// The booking this event names, when it names one (PING does not).
    pub fn uid(&self) -> Option<&str> {
        match self {
            Event::Booking(b) => Some(b.uid.as_str()),
            Event::Other { uid, .. } => uid.as_deref(),
        }
    }
}

/// The trigger name, read leniently so even a refused body's receipt says what it was.
pub fn trigger_name(payload: &Value) -> Option<String> {
    payload
        .get("triggerEvent")
        .and_then(Value::as_str)
        .map(|t| clip(t.trim(), 100))
}

/// Parses the body. Errors name the offending field.
pub fn parse(payload: &Value) -> Result<Event, WebhookError> {
    let obj = payload
        .as_object()
        .ok_or_else(|| WebhookError::Malformed("body must be a JSON object".into()))?;
    let trigger_raw = text(obj, "triggerEvent", "triggerEvent")?
        .ok_or_else(|| WebhookError::validation("triggerEvent", "is required"))?;
    let Some(trigger) = Trigger::parse(trigger_raw) else {
        // Lenient: the uid only keys the receipt of an event we do not act on.
        let inner = obj.get("payload").and_then(Value::as_object);
        let uid = [
            inner.and_then(|p| p.get("uid")),
            inner.and_then(|p| p.get("bookingUid")),
            obj.get("uid"),
        ]
        .into_iter()
        .flatten()
        .find_map(Value::as_str)
        .map(str::trim)
        .filter(|u| !u.is_empty() && u.len() <= MAX_UID && !u.chars().any(char::is_control))
        .map(str::to_owned);
        return Ok(Event::Other {
            trigger: clip(trigger_raw, 100),
            uid,
        });
    };
    let created_at = timestamp(obj, "createdAt", "createdAt")?;
    let p = match obj.get("payload") {
        Some(Value::Object(p)) => p,
        None | Some(Value::Null) => return Err(WebhookError::validation("payload", "is required")),
        Some(_) => return Err(WebhookError::validation("payload", "must be an object")),
    };
    let uid = uid_field(p, "uid", "payload.uid")?
        .ok_or_else(|| WebhookError::validation("payload.uid", "is required"))?;
    let start = timestamp(p, "startTime", "payload.startTime")?
        .ok_or_else(|| WebhookError::validation("payload.startTime", "is required"))?;
    let end = timestamp(p, "endTime", "payload.endTime")?
        .ok_or_else(|| WebhookError::validation("payload.endTime", "is required"))?;
    if end < start {
        return Err(WebhookError::validation(
            "payload.endTime",
            "must not be before payload.startTime",
        ));
    }
    let organizer = organizer(p)?;
    let attendees = attendees(p, &organizer)?;
    let location = text(p, "location", "payload.location")?.map(|s| clip(s, 500));
    let meeting_url = meeting_url(p, location.as_deref())?;
    let booking_id =
        match p.get("bookingId") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_i64().ok_or_else(|| {
                WebhookError::validation("payload.bookingId", "must be an integer")
            })?),
        };
    let reschedule_uid = match trigger {
        Trigger::Rescheduled => uid_field(p, "rescheduleUid", "payload.rescheduleUid")?,
        _ => None,
    };
    Ok(Event::Booking(Box::new(Booking {
        trigger,
        title: text(p, "title", "payload.title")?
            .map_or_else(|| "Meeting".to_string(), |t| clip(t, 300)),
        start,
        end,
        attendees,
        organizer,
        location,
        meeting_url,
        reschedule_uid,
        status: text(p, "status", "payload.status")?.map(|s| clip(s, 40)),
        cancellation_reason: text(p, "cancellationReason", "payload.cancellationReason")?
            .map(|s| clip(s, 1000)),
        created_at,
        booking_id,
        uid,
    })))
}

fn uid_field(
    obj: &Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<String>, WebhookError> {
    match text(obj, key, field)? {
        None => Ok(None),
        Some(u) if u.len() > MAX_UID => Err(WebhookError::validation(
            field,
            "is longer than 200 characters",
        )),
        Some(u) if u.chars().any(char::is_control) => Err(WebhookError::validation(
            field,
            "contains control characters",
        )),
        Some(u) => Ok(Some(u.to_string())),
    }
}

fn organizer(p: &Map<String, Value>) -> Result<Organizer, WebhookError> {
    let o = match p.get("organizer") {
        None | Some(Value::Null) => return Ok(Organizer::default()),
        Some(Value::Object(o)) => o,
        Some(_) => {
            return Err(WebhookError::validation(
                "payload.organizer",
                "must be an object",
            ));
        }
    };
    Ok(Organizer {
        // Cal.com blanks the organizer's e-mail when the event type hides it.
        email: text(o, "email", "payload.organizer.email")?
            .and_then(|e| EmailAddress::parse(e).ok()),
        name: text(o, "name", "payload.organizer.name")?.map(|s| clip(s, 200)),
        time_zone: text(o, "timeZone", "payload.organizer.timeZone")?.map(|s| clip(s, 64)),
    })
}

/// Attendees in Cal.com's order (the booker first), each e-mail once, the organizer left out.
fn attendees(p: &Map<String, Value>, organizer: &Organizer) -> Result<Vec<Attendee>, WebhookError> {
    let list = match p.get("attendees") {
        Some(Value::Array(list)) => list,
        None | Some(Value::Null) => {
            return Err(WebhookError::validation("payload.attendees", "is required"));
        }
        Some(_) => {
            return Err(WebhookError::validation(
                "payload.attendees",
                "must be an array",
            ));
        }
    };
    let mut out: Vec<Attendee> = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let field = format!("payload.attendees[{i}]");
        let a = entry
            .as_object()
            .ok_or_else(|| WebhookError::validation(field.as_str(), "must be an object"))?;
        let email_field = format!("{field}.email");
        let raw = text(a, "email", &email_field)?
            .ok_or_else(|| WebhookError::validation(email_field.as_str(), "is required"))?;
        let email = EmailAddress::parse(raw)
            .map_err(|reason| WebhookError::validation(email_field.as_str(), reason))?;
        let name = text(a, "name", &format!("{field}.name"))?.map(|s| clip(s, 200));
        let time_zone = text(a, "timeZone", &format!("{field}.timeZone"))?.map(|s| clip(s, 64));
        if organizer.email.as_ref() == Some(&email) || out.iter().any(|seen| seen.email == email) {
            continue;
        }
        out.push(Attendee {
            email,
            name,
            time_zone,
        });
    }
    if out.is_empty() {
        return Err(WebhookError::validation(
            "payload.attendees",
            "must list at least one attendee other than the organizer",
        ));
    }
    Ok(out)
}

fn meeting_url(
    p: &Map<String, Value>,
    location: Option<&str>,
) -> Result<Option<String>, WebhookError> {
    let from_metadata = match p.get("metadata") {
        Some(Value::Object(m)) => text(m, "videoCallUrl", "payload.metadata.videoCallUrl")?,
        _ => None,
    };
    let from_video_call = match p.get("videoCallData") {
        Some(Value::Object(v)) => text(v, "url", "payload.videoCallData.url")?,
        _ => None,
    };
    let from_location = location.filter(|l| l.starts_with("https://") || l.starts_with("http://"));
    Ok(from_metadata
        .or(from_video_call)
        .or(from_location)
        .map(|u| clip(u, 1000)))
}

#[cfg(test)]
mod tests;
