//! The whole system on one machine: every HTTP function mounted at its API
//! Gateway path on one port, the same handlers Lambda runs, workers and the
//! outbox relay in-process, media in a local folder, real PostgreSQL.

use anyhow::Context;
use crm_domain::outbox::QueueName;
use crm_platform::{
    config::{CommonConfig, Env},
    db::{self, build_pool},
    local_queue::PgQueue,
    telemetry,
};
use local_runner::routes;
use std::{sync::Arc, time::Duration};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::from_process();
    let mut common = CommonConfig::from_env(&env)?;
    telemetry::init(&common.log_level);
    let port: u16 = env.parse("PORT", 3000)?;

    let applied = db::migrate(&common.database)
        .await
        .context("applying migrations")?;
    tracing::info!(?applied, "database migrated");

    // One pool for every function and worker of this process (PG_POOL_MAX,
    // 24 under `make run`; docs/reliability.md has the budget).
    let pool = build_pool(&common.database)?;
    common.database.shared = Some(pool.clone());
    tracing::info!(
        pool_max = common.database.pool_max,
        "one shared PostgreSQL pool"
    );

    let dev_admin = dev_admin(&common, &env).await?;

    let table = routes::build(&common, &env)?;

    // Workers: the outbox relay publishes to queues kept in PostgreSQL
    // (local_queue_messages), as durable as SQS: a message is gone only when
    // its worker acknowledged it, and one claimed by a process that was
    // killed is received again after its visibility deadline. The send
    // worker consumes its queue with the Lambda's own `process` (retries
    // re-deliver after the backoff), and so do the media and enrichment
    // workers; a queue without a local worker keeps its messages.
    let queue = PgQueue::new(pool.clone());
    let mut receivers: std::collections::HashMap<_, _> = QueueName::ALL
        .into_iter()
        .map(|q| (q, queue.source(q)))
        .collect();
    if let Some(rx) = receivers.remove(&QueueName::Send) {
        send_worker::local::spawn(rx, send_worker::Deps::new(&common, &env)?);
    }
    // The media worker needs Twilio credentials (TWILIO_ACCOUNT_SID); without
    // them its queue is drained and reported like the others.
    if let Some(rx) = receivers.remove(&QueueName::Media) {
        match media_worker::local::deps(&common, &env) {
            Ok(deps) => drop(media_worker::local::spawn(rx, deps)),
            Err(e) => {
                tracing::warn!(error = %e, "media worker not started: media jobs are not fetched");
                receivers.insert(QueueName::Media, rx);
            }
        }
    }
    // The enrichment worker: without DIRETRIX_*/WORK_API/C2S_* it runs on its
    // labelled local sinks (lookups "not found", notes recorded, not posted).
    if let Some(rx) = receivers.remove(&QueueName::Enrichment) {
        enrichment_worker::local::spawn(rx, enrichment_worker::Deps::new(&common, &env)?);
    }
    // The campaign worker releases send jobs and its own continuations
    // through the outbox and publishes them right after commit to these queues.
    if let Some(rx) = receivers.remove(&QueueName::Campaign) {
        let mut deps = campaign_worker::Deps::new(&common, &env)?;
        deps.publisher = Some(Arc::new(queue.clone()));
        campaign_worker::local::spawn(rx, deps);
    }
    for name in receivers.keys() {
        tracing::warn!(
            queue = name.as_str(),
            "no local worker for this queue: its messages wait in PostgreSQL"
        );
    }
    let relay_pool = pool.clone();
    tokio::spawn(async move {
        loop {
            // The same run as the scheduled Lambda: relay, then purge expired idempotency keys.
            if let Err(e) = queue.purge().await {
                tracing::warn!(error = %crm_domain::db::loggable(&e), "purging acknowledged local queue messages failed");
            }
            match outbox_relay::run(&relay_pool, &queue, Duration::from_secs(5)).await {
                Ok(r)
                    if r.relay.published + r.relay.failed > 0
                        || r.idempotency_keys_purged > 0
                        || r.stale.total() > 0 =>
                {
                    tracing::info!(
                        stale_redriven = r.stale.total(),
                        published = r.relay.published,
                        failed = r.relay.failed,
                        purged = r.idempotency_keys_purged,
                        "outbox relay"
                    )
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %crm_domain::db::loggable(&e), "outbox relay failed")
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{port} (set PORT to use another)"))?;
    print_banner(port, &table);
    if let Some((email, password)) = dev_admin {
        println!(
            "Development admin created (no users existed; development only):\n  e-mail:   {email}\n  password: {password}\n  TOKEN=$(curl -s -X POST http://127.0.0.1:{port}/api/v1/auth/login -H 'Content-Type: application/json' \\\n    -d '{{\"email\":\"{email}\",\"password\":\"{password}\"}}' | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/')\n"
        );
    }
    axum::serve(listener, routes::router(table))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving HTTP")
}

/// With no users at all (and never in production), an admin from
/// `DEV_ADMIN_EMAIL` / `DEV_ADMIN_PASSWORD` (defaults below), printed once.
const DEFAULT_DEV_ADMIN_EMAIL: &str = "admin@example.com";
const DEFAULT_DEV_ADMIN_PASSWORD: &str = "correct horse battery staple";

async fn dev_admin(common: &CommonConfig, env: &Env) -> anyhow::Result<Option<(String, String)>> {
    use crm_domain::accounts::{bootstrap, password};
    if common.app_env == crm_platform::config::AppEnv::Production {
        return Ok(None);
    }
    let email = crm_domain::EmailAddress::parse(
        env.optional("DEV_ADMIN_EMAIL")
            .unwrap_or(DEFAULT_DEV_ADMIN_EMAIL),
    )
    .map_err(|r| anyhow::anyhow!("DEV_ADMIN_EMAIL {r}"))?;
    let raw = env
        .optional("DEV_ADMIN_PASSWORD")
        .unwrap_or(DEFAULT_DEV_ADMIN_PASSWORD)
        .to_string();
    let pw = password::NewPassword::parse(&raw)
        .map_err(|r| anyhow::anyhow!("DEV_ADMIN_PASSWORD {r}"))?;
    let pool = build_pool(&common.database)?;
    let mut client = pool
        .get()
        .await
        .context("connecting for the development admin")?;
    if crm_domain::accounts::users::any_user(&client).await? {
        return Ok(None);
    }
    let hash = tokio::task::spawn_blocking(move || password::hash(&pw)).await??;
    Ok(bootstrap::development_admin(&mut client, &email, &hash)
        .await?
        .map(|u| (u.email, raw)))
}

fn print_banner(port: u16, table: &routes::Table) {
    let base = format!("http://127.0.0.1:{port}");
    println!("\nCRM hub listening on {base}");
    println!("  GET  {base}/health");
    println!("  GET  {base}/openapi.json");
    if console::is_built() {
        println!("  GET  {base}/            the web console (sign in, board, contacts, inbox)");
    } else {
        println!(
            "  GET  {base}/            the web console: not built (cd functions/console/web && npm ci && npm run build)"
        );
    }
    for r in table.routes() {
        println!("  {:<4} {base}{}", r.method, r.path);
    }
    println!(
        "\nTry the Instantly webhook (seed shape, shared-secret header; `make run` defaults the secret to dev-instantly-secret):"
    );
    println!(
        "  curl -s -X POST {base}/crm/webhooks/instantly/reply \\\n    -H 'Content-Type: application/json' \\\n    -H \"X-Webhook-Secret: ${{HMAC_SHARED_SECRET_INSTANTLY:-dev-instantly-secret}}\" \\\n    -d '{{\"event\":\"reply_received\",\"lead\":{{\"email\":\"jane@example.com\",\"full_name\":\"Jane Doe\"}},\"message\":{{\"text\":\"Interested! Can we book a call?\",\"subject\":\"Re: hello\"}},\"idempotency_key\":\"demo-1\"}}'\n"
    );
    println!(
        "Try the CRM API with a development token (`make run` defaults JWT_SECRET to dev-jwt-secret-0123456789abcdef0123):"
    );
    println!(
        "  TOKEN=$(JWT_SECRET=dev-jwt-secret-0123456789abcdef0123 cargo run -q -p crm-actions --bin mint-token -- --sub alice --role admin)\n  curl -s {base}/crm/deals -H \"Authorization: Bearer $TOKEN\"\n"
    );
}
