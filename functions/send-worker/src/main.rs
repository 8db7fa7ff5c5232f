use aws_lambda_events::sqs::SqsEvent;
use crm_platform::{
    config::{CommonConfig, Env},
    lambda,
    queue::SqsVisibility,
    telemetry,
};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use send_worker::{Deps, handle};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let deps: &'static Deps = lambda::init(|env: Env| async move {
        let common = CommonConfig::from_env(&env)?;
        telemetry::init(&common.log_level);
        let mut deps = Deps::new(&common, &env)?;
        // Retries back off by changing the message's visibility; without the
        // queue URL the queue's own visibility timeout paces them.
        match env.optional("QUEUE_URL_SEND") {
            Some(url) => {
                let aws = crm_platform::aws::load().await;
                let sqs = crm_platform::aws::sqs(&aws);
                deps.visibility = Some(Arc::new(SqsVisibility::new(sqs, url)));
            }
            None => {
                tracing::warn!(
                    "QUEUE_URL_SEND is not set: retries wait the queue's visibility timeout"
                )
            }
        }
        // Media messages: Twilio fetches the file through a presigned S3 GET.
        if let Some(bucket) = env.optional("MEDIA_BUCKET") {
            let aws = crm_platform::aws::load().await;
            let s3 = crm_platform::aws::s3(&aws, env.optional("AWS_ENDPOINT_URL").is_some());
            deps.media = Some(Arc::new(crm_platform::blob::S3Blob::new(s3, bucket)));
        }
        let deps: &'static Deps = Box::leak(Box::new(deps));
        Ok::<_, Error>(deps)
    })
    .await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(handle(event.payload, deps).await)
    }))
    .await
}
