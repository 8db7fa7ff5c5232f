//! The CRM domain: value types parsed at the edge, the webhook flows, and the
//! PostgreSQL repositories they run on. Nothing here knows about Lambda, API
//! Gateway or AWS; adapters in `crm-platform` translate to and from them.

pub mod auth;
pub mod c2s;
pub mod calcom;
pub mod campaigns;
pub mod crm;
pub mod db;
pub mod enrichment;
pub mod error;
pub mod fields;
pub mod inbox;
pub mod instantly;
pub mod intent;
pub mod jobs;
pub mod mail;
pub mod media;
pub mod messaging;
pub mod migrations;
pub mod outbox;
pub mod phone;
pub mod pipeline;
pub mod secret;
pub mod signature;
pub mod twilio;
pub mod types;
pub mod unsubscribe;
pub mod webhook_diagnostics;
pub mod webhooks_out;

pub use error::WebhookError;
pub use secret::Secret;
pub use types::{EmailAddress, IdempotencyKey, PayloadHash};
