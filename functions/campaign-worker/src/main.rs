use aws_lambda_events::sqs::SqsEvent;
use campaign_worker::{Deps, handle};
use crm_domain::outbox::{Publisher, QueueName};
use crm_platform::{
    config::{CommonConfig, Env},
    lambda,
    queue::{SqsPublisher, SqsVisibility},
    telemetry,
};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use std::{sync::Arc, time::Duration};

/// Left between the end of the release loop and the function's timeout.
const DEADLINE_MARGIN: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> Result<(), Error> {
    let deps: &'static Deps = lambda::init(|env: Env| async move {
        let common = CommonConfig::from_env(&env)?;
        telemetry::init(&common.log_level);
        let mut deps = Deps::new(&common, &env)?;
        // Send jobs (and the continuation) are published right after commit;
        // without queue URLs the scheduled relay publishes them.
        let urls = SqsPublisher::urls_from_env(&env);
        if !urls.is_empty() {
            let aws = aws_config::load_from_env().await;
            let sqs = aws_sdk_sqs::Client::new(&aws);
            // A failed run comes back after RETRY_AFTER, not the queue's 900 s.
            if let Some(url) = urls.get(&QueueName::Campaign) {
                deps.visibility = Some(Arc::new(SqsVisibility::new(sqs.clone(), url.clone())));
            }
            let publisher: Arc<dyn Publisher> = Arc::new(SqsPublisher::new(sqs, urls));
            deps.publisher = Some(publisher);
        }
        let deps: &'static Deps = Box::leak(Box::new(deps));
        Ok::<_, Error>(deps)
    })
    .await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        // CAMPAIGN_RUN_BUDGET_SECS, capped by this invocation's own deadline.
        let left = event
            .context
            .deadline()
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
            .saturating_sub(DEADLINE_MARGIN);
        let budget = deps.config.budget.min(left);
        Ok::<_, Error>(handle(event.payload, deps, budget).await)
    }))
    .await
}
