//! Applies `migrations/`: run as a Lambda after each deploy (any event), or
//! from a shell (`cargo run -p migrate`) when not inside Lambda.

use crm_platform::{
    config::{DatabaseConfig, Env},
    db, telemetry,
};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::from_process();
    telemetry::init(env.optional("LOG_LEVEL").unwrap_or("info"));
    let database = DatabaseConfig::from_env(&env)?;
    if env.optional("AWS_LAMBDA_RUNTIME_API").is_none() {
        let applied = db::migrate(&database).await?;
        tracing::info!(?applied, "migrations applied");
        return Ok(());
    }
    let database = &database;
    lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move {
        let applied = db::migrate(database).await?;
        tracing::info!(?applied, "migrations applied");
        Ok::<_, Error>(json!({"applied": applied}))
    }))
    .await
}
