//! Applies `migrations/`: run as a Lambda after each deploy (any event; the
//! stack's custom resource invokes it on every deploy, see docs/deploy.md),
//! or from a shell (`cargo run -p migrate`) when not inside Lambda.

use crm_platform::{
    config::{DatabaseConfig, Env},
    db, lambda, telemetry,
};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (env, database) = lambda::init(|env: Env| async move {
        telemetry::init(env.optional("LOG_LEVEL").unwrap_or("info"));
        let database = DatabaseConfig::from_env(&env)?;
        Ok::<_, Error>((env, database))
    })
    .await?;
    if env.optional("AWS_LAMBDA_RUNTIME_API").is_none() {
        let applied = db::migrate(&database).await?;
        tracing::info!(?applied, "migrations applied");
        return Ok(());
    }
    let database = &database;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        migrate::handle(event.payload, database).await
    }))
    .await
}
