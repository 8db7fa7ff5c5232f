use accounts::{Deps, handle};
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
    let deps = Deps::new(&common, &env)?;
    // The dummy hash that unknown e-mails are checked against, made before
    // the first request so that one costs what the others do.
    tokio::task::spawn_blocking(crm_domain::accounts::password::warm_up).await?;
    let deps: &'static Deps = Box::leak(Box::new(deps));
    lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(handle(req, deps).await)
    }))
    .await
}
