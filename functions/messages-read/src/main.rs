use crm_platform::{
    config::{CommonConfig, Env},
    lambda, telemetry,
};
use lambda_http::{Error, Request, service_fn};
use messages_read::{Deps, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let deps: &'static Deps = lambda::init(|env: Env| async move {
        let common = CommonConfig::from_env(&env)?;
        telemetry::init(&common.log_level);
        let mut deps = Deps::new(&common, &env)?;
        // Media links are presigned S3 GETs of the media bucket.
        if let Some(bucket) = env.optional("MEDIA_BUCKET") {
            let aws = crm_platform::aws::load().await;
            let s3 = crm_platform::aws::s3(&aws, env.optional("AWS_ENDPOINT_URL").is_some());
            deps.media = Some(std::sync::Arc::new(crm_platform::blob::S3Blob::new(
                s3, bucket,
            )));
        }
        let deps: &'static Deps = Box::leak(Box::new(deps));
        Ok::<_, Error>(deps)
    })
    .await?;
    lambda_http::run(service_fn(move |req: Request| async move {
        // Bounded by the invocation's remaining time: 503 + Retry-After past it.
        let deadline = crm_platform::http::deadline(&req);
        Ok::<_, Error>(crm_platform::http::bounded(deadline, handle(req, deps)).await)
    }))
    .await
}
