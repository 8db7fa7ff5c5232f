//! Applies `migrations/`: run as a Lambda after each deploy (any event; the
//! stack's custom resource invokes it on every deploy, see docs/deploy.md),
//! or from a shell (`cargo run -p migrate`) when not inside Lambda.
//!
//! With `{"bootstrap_admin": {"email": "…", "name": "…"}}` it then creates
//! the first admin (no password) and answers its one-time set-password URL
//! (`PUBLIC_BASE_URL/set-password?token=…`, 72 hours); refused once any
//! admin exists (events/migrate/bootstrap-admin.json).

use crm_domain::{
    EmailAddress,
    accounts::bootstrap::{self, Bootstrap},
};
use crm_platform::{
    config::{DatabaseConfig, Env},
    db, lambda, telemetry,
};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

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
    let base = env
        .optional("PUBLIC_BASE_URL")
        .map(|b| b.trim().trim_end_matches('/').to_string());
    let (database, base) = (&database, &base);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let request = event.payload.get("bootstrap_admin").cloned();
        let mut answer = migrate::handle(event.payload, database).await?;
        if let Some(request) = request {
            answer["bootstrap_admin"] =
                bootstrap_admin(database, base.as_deref(), &request).await?;
        }
        Ok::<_, Error>(answer)
    }))
    .await
}

async fn bootstrap_admin(
    database: &DatabaseConfig,
    base: Option<&str>,
    request: &Value,
) -> Result<Value, Error> {
    let email = match EmailAddress::parse(request["email"].as_str().unwrap_or("")) {
        Ok(e) => e,
        Err(reason) => return Ok(json!({"refused": format!("email {reason}")})),
    };
    let name = request["name"]
        .as_str()
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.chars().count() <= 120)
        .unwrap_or_else(|| email.local_part())
        .to_string();
    let Some(base) = base else {
        return Ok(json!({"refused": "PUBLIC_BASE_URL is not set"}));
    };
    let pool = db::build_pool(&DatabaseConfig {
        pool_max: 1,
        ..database.clone()
    })?;
    let mut client = pool.get().await?;
    Ok(
        match bootstrap::first_admin(&mut client, &email, &name).await? {
            Bootstrap::Created { user, link } => {
                tracing::info!(user_id = %user.id, "first admin created");
                json!({
                    "user_id": user.id,
                    "set_password_url": format!("{base}/set-password?token={}", link.token.expose()),
                    "expires_at": link.expires_at,
                })
            }
            Bootstrap::AdminExists => json!({"refused": "an admin exists already"}),
            Bootstrap::EmailTaken => json!({"refused": "that e-mail belongs to an existing user"}),
        },
    )
}
