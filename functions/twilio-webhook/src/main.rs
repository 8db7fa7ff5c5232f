use crm_platform::{
    config::{CommonConfig, Env},
    lambda, telemetry,
};
use lambda_http::{Error, Request, service_fn};
use twilio_webhook::{Deps, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let deps: &'static Deps = lambda::init(|env: Env| async move {
        let common = CommonConfig::from_env(&env)?;
        telemetry::init(&common.log_level);
        let deps: &'static Deps = Box::leak(Box::new(Deps::new(&common, &env)?));
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
