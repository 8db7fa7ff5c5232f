//! Queue messages: one tagged, versioned enum shared by producers (through
//! the outbox) and consumers (the workers). Adding a kind is additive; a
//! breaking change to a kind bumps its `v`.

use crate::{
    db::GenericClient,
    outbox::{self, QueueName},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Post an event to every configured outbound webhook URL (send queue).
    DeliverWebhook(DeliverWebhook),
    /// Hand one queued outbound WhatsApp/SMS message to Twilio (send queue).
    SendMessage(SendMessage),
    /// Send one released campaign delivery through its channel's provider (send queue).
    SendCampaignMessage(SendCampaignMessage),
    /// Deliver one manager notification (a C2S lead closed) by e-mail or webhook (send queue).
    NotifyManager(NotifyManager),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotifyManager {
    pub v: u8,
    /// `manager_notifications.id`: channel, recipient and text are read from
    /// its row, which is also the at-most-once record of the send.
    pub notification_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendCampaignMessage {
    pub v: u8,
    /// `campaign_deliveries.id`: the worker renders and sends what the ledger
    /// row and its campaign say, once (the row is the idempotency record).
    pub delivery_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendMessage {
    pub v: u8,
    /// `messages.id` of the queued outbound message; everything else is read
    /// from its row, so a redelivered job sends what is stored, once.
    pub message_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliverWebhook {
    /// Message schema version of this kind.
    pub v: u8,
    /// Stable id of the event: the Standard Webhooks `webhook-id`, and the
    /// deduplication key of its deliveries.
    pub event_id: Uuid,
    /// e.g. `deal.stage_changed`.
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub payload: Value,
}

impl Job {
    pub fn queue(&self) -> QueueName {
        match self {
            Job::DeliverWebhook(_)
            | Job::SendMessage(_)
            | Job::SendCampaignMessage(_)
            | Job::NotifyManager(_) => QueueName::Send,
        }
    }

    pub fn parse(body: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(body)
    }
}

/// Writes the job to the outbox; call inside the transaction of the change.
pub async fn enqueue(db: &impl GenericClient, job: &Job) -> anyhow::Result<Uuid> {
    let body = serde_json::to_value(job).expect("jobs always serialise");
    outbox::enqueue(db, job.queue(), &body).await
}

/// Work for the media queue. Same wire format as `Job` (tagged by `kind`,
/// versioned by `v`); kept apart only until the send worker's `match` on
/// `Job` takes other kinds, then it becomes a `Job` variant unchanged on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MediaJob {
    /// Copy one media file of an inbound Twilio message into the blob store.
    FetchTwilioMedia(FetchTwilioMedia),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchTwilioMedia {
    pub v: u8,
    pub message_id: Uuid,
    /// N of `MediaUrlN`: with `message_id`, the stable name of the stored copy.
    pub index: u8,
    /// Twilio's media URL; the worker fetches only from Twilio's media hosts.
    pub url: String,
    pub content_type: Option<String>,
}

impl MediaJob {
    pub fn queue(&self) -> QueueName {
        QueueName::Media
    }

    pub fn parse(body: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(body)
    }
}

/// Work for the enrichment queue (Contact2Sale leads). Same wire format as
/// `Job`: tagged by `kind`, versioned by `v`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EnrichmentJob {
    /// Process one accepted C2S hook element (validate, look up, enrich, post
    /// the note; or record a close and notify the manager).
    EnrichLead(EnrichLead),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrichLead {
    pub v: u8,
    /// `webhook_events.id` of the element: the worker moves it received →
    /// completed | partial | failed | skipped.
    pub event_id: Uuid,
    /// `c2s_leads.id`.
    pub lead_id: String,
    /// `on_create_lead` | `on_update_lead` | `on_close_lead`.
    pub hook_action: String,
}

impl EnrichmentJob {
    pub fn queue(&self) -> QueueName {
        QueueName::Enrichment
    }

    pub fn parse(body: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(body)
    }
}

/// Writes an enrichment job to the outbox; call inside the transaction of the change.
pub async fn enqueue_enrichment(
    db: &impl GenericClient,
    job: &EnrichmentJob,
) -> anyhow::Result<Uuid> {
    let body = serde_json::to_value(job).expect("jobs always serialise");
    outbox::enqueue(db, job.queue(), &body).await
}

/// Work for the campaign queue. Same wire format as `Job`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CampaignJob {
    /// Snapshot the campaign's segment into the ledger (once), then release
    /// queued deliveries in paced batches until none is left, the campaign is
    /// paused or cancelled, or the invocation's time budget ends (then it
    /// enqueues its own continuation).
    RunCampaign(RunCampaign),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunCampaign {
    pub v: u8,
    pub campaign_id: Uuid,
}

impl CampaignJob {
    pub fn queue(&self) -> QueueName {
        QueueName::Campaign
    }

    pub fn parse(body: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(body)
    }
}

/// Writes a campaign job to the outbox; call inside the transaction of the change.
pub async fn enqueue_campaign(db: &impl GenericClient, job: &CampaignJob) -> anyhow::Result<Uuid> {
    let body = serde_json::to_value(job).expect("jobs always serialise");
    outbox::enqueue(db, job.queue(), &body).await
}

/// Writes a media job to the outbox; call inside the transaction of the change.
pub async fn enqueue_media(db: &impl GenericClient, job: &MediaJob) -> anyhow::Result<Uuid> {
    let body = serde_json::to_value(job).expect("jobs always serialise");
    outbox::enqueue(db, job.queue(), &body).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deliver_webhook_has_a_stable_wire_format() {
        let id = Uuid::parse_str("0192f0c8-7a00-7000-8000-000000000001").unwrap();
        let job = Job::DeliverWebhook(DeliverWebhook {
            v: 1,
            event_id: id,
            event_type: "deal.stage_changed".into(),
            occurred_at: "2026-11-23T10:00:00Z".parse().unwrap(),
            payload: json!({"deal_id": "d"}),
        });
        let wire = serde_json::to_value(&job).unwrap();
        assert_eq!(
            wire,
            json!({"kind": "deliver_webhook", "v": 1, "event_id": id, "event_type": "deal.stage_changed",
                   "occurred_at": "2026-11-23T10:00:00Z", "payload": {"deal_id": "d"}})
        );
        assert_eq!(Job::parse(&wire.to_string()).unwrap(), job);
        assert!(Job::parse(r#"{"kind":"launch_rockets"}"#).is_err());
    }

    #[test]
    fn fetch_twilio_media_has_a_stable_wire_format() {
        let id = Uuid::parse_str("0192f0c8-7a00-7000-8000-000000000002").unwrap();
        let job = MediaJob::FetchTwilioMedia(FetchTwilioMedia {
            v: 1,
            message_id: id,
            index: 0,
            url: "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1".into(),
            content_type: Some("image/jpeg".into()),
        });
        let wire = serde_json::to_value(&job).unwrap();
        assert_eq!(
            wire,
            json!({"kind": "fetch_twilio_media", "v": 1, "message_id": id, "index": 0,
                   "url": "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
                   "content_type": "image/jpeg"})
        );
        assert_eq!(MediaJob::parse(&wire.to_string()).unwrap(), job);
        assert_eq!(job.queue(), QueueName::Media);
    }
}
