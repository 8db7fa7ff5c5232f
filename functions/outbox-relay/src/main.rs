use aws_lambda_events::eventbridge::EventBridgeEvent;
use crm_platform::{
    config::{CommonConfig, Env},
    db::{PgPool, build_pool},
    lambda,
    queue::SqsPublisher,
    telemetry,
};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (pool, publisher): (PgPool, SqsPublisher) = lambda::init(|env: Env| async move {
        let common = CommonConfig::from_env(&env)?;
        telemetry::init(&common.log_level);
        let pool = build_pool(&common.database)?;
        let urls = SqsPublisher::urls_from_env(&env);
        if urls.is_empty() {
            return Err(
                "configuration QUEUE_URL_SEND: at least one QUEUE_URL_<NAME> is required".into(),
            );
        }
        let aws = aws_config::load_from_env().await;
        let publisher = SqsPublisher::new(aws_sdk_sqs::Client::new(&aws), urls);
        Ok::<_, Error>((pool, publisher))
    })
    .await?;
    let (pool, publisher) = (&pool, &publisher);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent<Value>>| async move {
            // Leave a margin before the invocation deadline.
            let budget = event
                .context
                .deadline()
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            let budget = budget.saturating_sub(Duration::from_secs(3));
            let report = outbox_relay::run(pool, publisher, budget).await?;
            let backlog = outbox_relay::report_backlog(pool, &report).await;
            tracing::info!(
                stale_redriven = report.stale.total(),
                published = report.relay.published,
                failed = report.relay.failed,
                idempotency_keys_purged = report.idempotency_keys_purged,
                backlog = backlog.map(|b| b.pending),
                "outbox relay run"
            );
            Ok::<_, Error>(json!({
                "stale_redriven": report.stale.total(),
                "published": report.relay.published,
                "failed": report.relay.failed,
                "idempotency_keys_purged": report.idempotency_keys_purged,
                "backlog": backlog.map(|b| b.pending),
            }))
        },
    ))
    .await
}
