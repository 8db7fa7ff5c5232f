use aws_lambda_events::sqs::SqsEvent;
use crm_platform::{
    config::{CommonConfig, Env},
    lambda,
    queue::SqsVisibility,
    telemetry,
};
use enrichment_worker::{Deps, handle_within};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let deps: &'static Deps = lambda::init(|env: Env| async move {
        let common = CommonConfig::from_env(&env)?;
        telemetry::init(&common.log_level);
        let mut deps = Deps::new(&common, &env)?;
        // Retries wait by changing the message's visibility (exponential backoff);
        // without the queue URL the queue's own visibility timeout paces them.
        if let Some(url) = env.optional("QUEUE_URL_ENRICHMENT") {
            let aws = crm_platform::aws::load().await;
            deps.visibility = Some(Arc::new(SqsVisibility::new(
                crm_platform::aws::sqs(&aws),
                url,
            )));
        }
        let deps: &'static Deps = Box::leak(Box::new(deps));
        Ok::<_, Error>(deps)
    })
    .await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        // The invocation's own deadline bounds every wait and call.
        let remaining = event
            .context
            .deadline()
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        Ok::<_, Error>(handle_within(event.payload, deps, remaining).await)
    }))
    .await
}
