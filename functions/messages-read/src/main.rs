use crm_platform::{
    config::{CommonConfig, Env},
    telemetry,
};
use lambda_http::{Error, Request, service_fn};
use messages_read::{Deps, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::from_process();
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
    lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(handle(req, deps).await)
    }))
    .await
}
