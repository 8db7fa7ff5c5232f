//! Adapters that keep Lambda, AWS and connection details out of the domain:
//! typed configuration, the Postgres pool, the queue and blob ports, HTTP
//! responses, and logging.

pub mod api;
pub mod aws;
pub mod blob;
pub mod config;
pub mod db;
pub mod email;
pub mod http;
pub mod jwks;
pub mod lambda;
pub mod local_media;
pub mod local_queue;
pub mod metrics;
pub mod queue;
pub mod secrets;
pub mod sqs_batch;
pub mod telemetry;
