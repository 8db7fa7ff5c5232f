//! Structured logs: JSON lines (what CloudWatch and `AWS_LAMBDA_LOG_FORMAT=JSON`
//! expect), filtered by `LOG_LEVEL`. `LOG_FORMAT=text` gives readable lines
//! locally. Log ids, never bodies, headers or secrets.

use tracing_subscriber::{EnvFilter, fmt};

pub fn init(log_level: &str) {
    let filter = EnvFilter::try_new(log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let text = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("text"));
    let builder = fmt().with_env_filter(filter).with_target(false);
    // try_init: a second call (tests, the local runner) keeps the first subscriber.
    let _ = if text {
        builder.compact().try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    };
}
