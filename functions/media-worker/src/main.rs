use aws_lambda_events::sqs::SqsEvent;
use crm_platform::{
    blob::S3Blob,
    config::{CommonConfig, Env},
    db::build_pool,
    lambda, telemetry,
};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use media_worker::{Deps, handle};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let deps: &'static Deps = lambda::init(|env: Env| async move {
        let common = CommonConfig::from_env(&env)?;
        telemetry::init(&common.log_level);
        let config = Deps::config(&common, &env)?;
        let bucket = env.required("MEDIA_BUCKET")?.to_string();
        let aws = crm_platform::aws::load().await;
        // A custom endpoint (a local AWS-compatible server) needs path-style addressing.
        let s3 = crm_platform::aws::s3(&aws, env.optional("AWS_ENDPOINT_URL").is_some());
        let blob = Arc::new(S3Blob::new(s3, bucket));
        let deps = Deps::with(build_pool(&common.database)?, blob, config)?;
        let deps: &'static Deps = Box::leak(Box::new(deps));
        Ok::<_, Error>(deps)
    })
    .await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(handle(event.payload, deps).await)
    }))
    .await
}
