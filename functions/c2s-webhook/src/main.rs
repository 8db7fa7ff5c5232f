use c2s_webhook::{Deps, handle};
use crm_platform::{
    config::{CommonConfig, Env},
    telemetry,
};
use lambda_http::{Error, Request, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::from_process();
    let common = CommonConfig::from_env(&env)?;
    telemetry::init(&common.log_level);
    let deps: &'static Deps = Box::leak(Box::new(Deps::new(&common, &env)?));
    lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(handle(req, deps).await)
    }))
    .await
}
