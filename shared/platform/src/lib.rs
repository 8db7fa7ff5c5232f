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
pub mod local_media;
pub mod local_queue;
pub mod queue;
pub mod sqs_batch;
pub mod telemetry;
