use c2s_webhook::{Deps, handle};
use crm_domain::outbox::Publisher;
use crm_platform::{
    config::{CommonConfig, Env},
    queue::SqsPublisher,
    telemetry,
};
use lambda_http::{Error, Request, service_fn};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::from_process();
    let common = CommonConfig::from_env(&env)?;
    telemetry::init(&common.log_level);
    let mut deps = Deps::new(&common, &env)?;
    // Publish enrichment jobs right after commit when the enrichment queue
    // is configured; otherwise the scheduled relay picks them up.
    let urls = SqsPublisher::urls_from_env(&env);
    if !urls.is_empty() {
        let aws = aws_config::load_from_env().await;
        let publisher: Arc<dyn Publisher> =
            Arc::new(SqsPublisher::new(aws_sdk_sqs::Client::new(&aws), urls));
        deps.publisher = Some(publisher);
    }
    let deps: &'static Deps = Box::leak(Box::new(deps));
    lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(handle(req, deps).await)
    }))
    .await
}
